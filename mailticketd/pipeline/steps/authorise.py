"""Decide whether the author may add to the referenced ticket, or gets a new one."""

from __future__ import annotations

from datetime import datetime, timedelta

from mailticketd.directory.policy import may_act_on
from mailticketd.pipeline.context import VIA_TOKEN, VIA_WEB, Context
from mailticketd.tickets.models import Ticket

NEW = "new"
FOLLOW_UP = "follow-up"


class Authorise:
    """Attach to the referenced ticket only for a participant, a manager of its organisation, an operator, or the
    organisation's primary contact answering their copy (by its token)."""

    name = "authorise"

    async def run(self, ctx: Context) -> None:
        if ctx.decision:  # decided before (a matched bounce)
            return
        if ctx.is_operator_address and not ctx.operator:
            ctx.flags.append("operator-address-without-proof")
        candidate = ctx.candidate
        if candidate is None:
            ctx.decision = NEW
            return
        ticket = candidate.ticket
        participants = await ctx.store.tickets.participant_ids(ticket.id)
        forged = ctx.forged and candidate.via not in (VIA_TOKEN, VIA_WEB)
        allowed = may_act_on(ctx.sender, ticket, participants, operator=ctx.operator) or (
            candidate.via == VIA_TOKEN and await _primary_contact_of(ctx, ticket))
        if forged or not allowed:
            # The author learns nothing of that ticket: the mail opens a new one, and
            # only operators see which ticket it tried to name.
            ctx.decision = NEW
            ctx.flags.append(f"refused-reference:{ticket.number}:{candidate.via}")
            return
        if ticket.status == "closed" and not ctx.operator:
            if _closed_since(ticket.closed_at, ctx.now) > timedelta(days=ctx.config.tickets.reopen_window_days):
                ctx.decision = NEW
                ctx.follows = ticket
                ctx.flags.append(f"follows-closed-ticket:{ticket.number}")
                return
            ctx.reopen = True
        ctx.ticket = ticket
        ctx.decision = FOLLOW_UP


async def _primary_contact_of(ctx: Context, ticket: Ticket) -> bool:
    """The organisation's primary contact received a copy of the ticket with a reply token of their own: their
    answer to it (the token proves it is that copy) belongs to the ticket, whatever their role."""
    sender = ctx.sender
    if sender is None or sender.status == "inactive" or ticket.organisation_id is None:
        return False
    if sender.organisation_id != ticket.organisation_id:
        return False
    organisation = await ctx.store.organisations.by_id(ticket.organisation_id)
    return organisation is not None and organisation.primary_contact_id == sender.id


def _closed_since(closed_at: str | None, now: datetime) -> timedelta:
    if not closed_at:
        return timedelta(0)
    return now - datetime.fromisoformat(closed_at)
