"""What every planned mail shares: sending it in the mail's thread, and who of a ticket still receives mail."""

from __future__ import annotations

from mailticketd.directory.models import User
from mailticketd.outbox.mailer import Letter
from mailticketd.pipeline.context import Context
from mailticketd.tickets.models import Ticket


async def send(ctx: Context, letter: Letter, ticket: Ticket | None = None) -> None:
    # An operator's own Message-ID (it names their mail host) never reaches customers.
    in_reply_to = None if ctx.operator else ctx.mail.message_id
    await ctx.services.mailer.send(ctx.store, letter, now=ctx.now, ticket=ticket or ctx.ticket,
                                   in_reply_to=in_reply_to, thread_index=ctx.mail.header("thread-index"),
                                   batch=ctx.letters)


async def customers(ctx: Context) -> list[User]:
    """Participants who still receive the ticket's mail: not inactive, not ours."""
    assert ctx.ticket is not None
    ids = await ctx.store.tickets.participant_ids(ctx.ticket.id)
    users = (await ctx.store.users.by_ids(ids)).values()
    return sorted((user for user in users if user.status != "inactive" and not ctx.is_local_address(user.address)
                   and not ctx.is_system_address(user.address)), key=lambda user: user.address)


def person(user: User) -> dict[str, str]:
    return {"address": user.address, "name": user.name}


def language(ctx: Context, user: User) -> str:
    return ctx.config.mail.language_for(user.language)
