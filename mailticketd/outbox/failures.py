"""Tell operators when an outgoing mail failed for good, and flag the recipient's address."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.outbox.mailer import Letter, Mailer
from mailticketd.storage import Database
from mailticketd.storage.outbox import OutboxRow

DELIVERY_FAILED = "delivery-failed"


def failure_reporter(db: Database, config: Config, mailer: Mailer,
                     wake: Callable[[], None]) -> Callable[[OutboxRow, str], Awaitable[None]]:
    """The delivery worker's ``on_failed``: a notice to every operator, queued in one transaction."""

    async def report(row: OutboxRow, error: str) -> None:
        if row.kind == DELIVERY_FAILED:
            return  # a failed notice about a failure would start a loop
        async with db.transaction() as store:
            await store.users.mark_delivery_failed(row.rcpt_to, error)
            ticket = await store.tickets.by_id(row.ticket_id) if row.ticket_id else None
            summary = await store.tickets.summary(ticket.number) if ticket else None
            context = {
                "ticket": mailer.ticket_context(ticket, summary.organisation if summary else None) if ticket else None,
                "recipient": row.rcpt_to, "error": error,
                "original_subject": await asyncio.to_thread(_subject, row.raw),
            }
            for operator in config.operators.addresses:
                if operator != row.rcpt_to:
                    await mailer.send(store, Letter(DELIVERY_FAILED, "delivery_failed", operator, context,
                                                    config.mail.default_language), now=utc_now(), ticket=ticket)
        wake()

    return report


def _subject(raw: bytes | None) -> str:
    from email import message_from_bytes, policy

    if not raw:
        return ""
    return str(message_from_bytes(raw, policy=policy.default).get("subject", ""))
