"""Store the mail as an article: open the ticket if needed, add participants and attachments."""

from __future__ import annotations

import re

from mailticketd.directory.policy import author_status
from mailticketd.mail.outlook import continued_thread_index
from mailticketd.directory.models import User
from mailticketd.pipeline.context import VIA_TOKEN, Context
from mailticketd.storage.tickets import NewAttachment
from mailticketd.tickets.tags import strip_tags

# A forward opens a ticket about the forwarded mail: its text is the request, not quoted history.
_FORWARD = re.compile(r"^\s*(?:fwd?|wg|tr|weitergeleitet)\s*:", re.IGNORECASE)


class StoreArticle:
    """Write the article, its attachments (once per content) and its Message-ID for threading."""

    name = "store-article"

    async def run(self, ctx: Context) -> None:
        store, sender = ctx.store, ctx.sender
        opened = ctx.ticket is None
        if ctx.ticket is None:
            # No subject stays empty: each reader sees the placeholder in their own language.
            subject = strip_tags(ctx.config.mail.tag_prefix, ctx.mail.subject)
            organisation_id = sender.organisation_id if sender and sender.status != "inactive" else None
            # The letters of this mail continue the sender's Outlook conversation (Thread-Index), or a new one.
            ctx.ticket = await store.tickets.create(
                first_number=ctx.config.tickets.first_number, subject=subject,
                organisation_id=organisation_id, requester_id=sender.id if sender else None,
                follows_ticket_id=ctx.follows.id if ctx.follows else None,
                thread_index=continued_thread_index(ctx.mail.header("thread-index"), ctx.now),
            )
            if _FORWARD.match(ctx.mail.subject) and (whole := ctx.mail.text.strip()):
                ctx.visible_text = whole
        elif ctx.kind == "mail" and not ctx.operator and (ctx.reopen or ctx.ticket.status == "pending"):
            ctx.ticket = await store.tickets.set_status(ctx.ticket.id, "open")
            if ctx.reopen:
                ctx.flags.append("reopened")
        ticket = ctx.ticket
        if ctx.kind not in ("bounce", "note", "reply"):
            members = [(sender.id, "requester" if ticket.requester_id == sender.id else "cc")] if sender else []
            members += [(user.id, "cc") for user in await _new_ccs(ctx)]
            await store.tickets.add_participants(ticket.id, members)

        # An empty attachment is not kept; the article says that the sender attached one.
        ctx.flags.extend(f"empty-attachment-dropped:{name}" for name in ctx.mail.dropped_attachments)
        ctx.author_status = author_status(sender, ticket.organisation_id, operator=ctx.operator, now=ctx.now)
        ctx.article_id = await store.articles.add(
            ticket_id=ticket.id, inbox_id=ctx.inbox_id, author_id=sender.id if sender else None,
            author_address=ctx.author_address or "", kind=ctx.kind, author_status=ctx.author_status,
            message_id=ctx.mail.message_id, subject=ctx.mail.subject, text=ctx.mail.text,
            visible_text=ctx.visible_text, html=ctx.mail.html, flags=ctx.flags,
        )
        if ctx.mail.attachments:
            await store.articles.add_attachments(ctx.article_id, [
                NewAttachment(item.name, item.content_type, item.content, item.sha256)
                for item in ctx.mail.attachments
            ])
        if ctx.mail.message_id and not ctx.operator:  # operators' own ids stay out of customers' References
            await store.articles.remember_message_id(
                ctx.mail.message_id, ticket_id=ticket.id, article_id=ctx.article_id, direction="in"
            )
        if not opened:  # a ticket opened just now was updated as it was created
            await store.tickets.touch(ticket.id)


async def _new_ccs(ctx: Context) -> list[User]:
    """CCs who join the ticket: all on a new ticket, a reply proven by its token, or one our MTA found
    DMARC-aligned; on any other follow-up (a tag or a Message-ID, which a forger can copy) none, so a
    forged sender cannot add a stranger."""
    assert ctx.ticket is not None
    if ctx.decision == "new" or (ctx.candidate is not None and ctx.candidate.via == VIA_TOKEN):
        return ctx.others
    if ctx.authentication is not None and ctx.author_address and ctx.authentication.dmarc_passed_for(
            ctx.author_address):
        return ctx.others  # our MTA vouches for the sender: a forger cannot produce that
    taking_part = await ctx.store.tickets.participant_ids(ctx.ticket.id)
    for user in ctx.others:
        if user.id not in taking_part:
            ctx.flags.append(f"cc-not-added:{user.address}")
    return []
