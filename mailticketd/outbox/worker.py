"""Send due outbox rows through the transport: retry temporary failures, give up on permanent ones.

The database lock is never held while the transport talks to the far side:
the row is claimed with a lease (a write), the lock released, the mail
sent, and the outcome written in a short transaction of its own right after.

A send is remembered before it can be repeated.  A row that cannot be
claimed is not sent; a row whose "sent" mark the database refuses (read-only,
disk full) stays leased and is kept in memory until the database takes the
mark.  While the database cannot be written the worker sends nothing and
``stopped`` says why (the health report shows it); it resumes by itself.
A crash between the send and the mark is the only way a mail can go out
twice: the daemon ends every lease when it starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from mailticketd.clock import iso, utc_now
from mailticketd.config import Config
from mailticketd.metrics import Metrics
from mailticketd.queue_worker import QueueWorker
from mailticketd.outbox.transports import PermanentFailure, TemporaryFailure, Transport
from mailticketd.storage import Database
from mailticketd.storage.outbox import OutboxRow

log = structlog.get_logger("mailticketd.outbox")

OnFailed = Callable[[OutboxRow, str], Awaitable[None]]

@dataclass(frozen=True)
class Stopped:
    """Why the worker sends nothing: the database cannot be written."""

    since: datetime
    error: str
    sent_not_recorded: int  # mails that left but that the database does not know as sent yet

    def report(self) -> dict[str, object]:
        return {"since": iso(self.since), "error": self.error, "sent_not_recorded": self.sent_not_recorded}


class DeliveryWorker(QueueWorker):
    """Work the outbox one row at a time; a row ends ``sent`` or ``failed``, never lost."""

    name = "outbox"

    def __init__(self, db: Database, config: Config, transport: Transport,
                 on_failed: OnFailed | None = None, clock: Callable[[], datetime] = utc_now,
                 metrics: Metrics | None = None) -> None:
        self.metrics = metrics or Metrics()
        self.db = db
        self.config = config
        self.transport = transport
        self.on_failed = on_failed
        self.clock = clock
        self._unrecorded: dict[int, datetime] = {}  # sent, not yet marked so in the database
        self._stopped: tuple[datetime, str] | None = None
        self._leases_released = False
        self._claimed: OutboxRow | None = None  # claimed with the last mark, not sent yet
        super().__init__()

    @property
    def poll_interval(self) -> float:
        return self.config.outbound.poll_interval

    @property
    def stopped(self) -> Stopped | None:
        """Why nothing is sent now, or None while the worker works."""
        if self._stopped is None:
            return None
        since, error = self._stopped
        return Stopped(since, error, len(self._unrecorded))

    async def drain(self) -> int:
        """Send every row that is due now, each at most once; returns how many were handled."""
        handled: set[int] = set()
        while (row := await self._next_row()) is not None:
            if row.id in handled:
                self._claimed = row  # kept for the next call, as claimed
                break
            handled.add(row.id)
            await self._deliver(row)
        return len(handled)

    async def process_next(self) -> bool:
        """Send the row that has been due longest; False when none is due or the database cannot be written."""
        row = await self._next_row()
        if row is None:
            return False
        await self._deliver(row)
        return True

    async def _next_row(self) -> OutboxRow | None:
        if self._claimed is not None:
            row, self._claimed = self._claimed, None
            return row
        return await self._claim_next()

    async def _claim_next(self) -> OutboxRow | None:
        """In one transaction: end a previous run's leases (once), mark what was sent as sent, claim the next row.

        Nothing is claimed, so nothing sent, until every earlier send is marked: a send is remembered before the
        next one can happen.
        """
        now = self.clock()
        try:
            async with self.db.transaction() as store:
                if not self._leases_released:
                    await store.outbox.release_leases()
                for outbox_id, sent_at in self._unrecorded.items():
                    await store.outbox.mark_sent(outbox_id, now=sent_at)
                row = await store.outbox.claim_next(now, now + timedelta(seconds=self.config.outbound.send_lease))
        except Exception as error:
            self._stop(error)
            return None
        self._leases_released = True
        self._unrecorded.clear()
        self._resume()
        return row

    def _stop(self, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"
        if self._stopped is None:
            log.error("outbox.stopped", error=text, sent_not_recorded=len(self._unrecorded))
            self._stopped = (self.clock(), text)
        else:
            self._stopped = (self._stopped[0], text)

    def _resume(self) -> None:
        if self._stopped is not None:
            log.warning("outbox.resumed", stopped_since=iso(self._stopped[0]))
            self._stopped = None

    async def _deliver(self, row: OutboxRow) -> None:
        assert row.raw is not None
        try:
            await self.transport.send(row.mail_from, row.rcpt_to, row.raw, delivery_id=_delivery_id(row))
        except PermanentFailure as failure:
            await self._fail(row, failure.message, reason="permanent")
            return
        except TemporaryFailure as failure:
            await self._retry_or_fail(row, failure.message)
            return
        except Exception as error:
            # A bug in a transport must not stall the queue: treat it as temporary, keep the trace.
            log.exception("outbox.transport_error", **_fields(row))
            await self._retry_or_fail(row, f"{type(error).__name__}: {error}")
            return
        self._unrecorded[row.id] = self.clock()
        self.metrics.sent.inc()
        log.info("outbox.sent", **_fields(row))
        # The mark and the next row's claim share a transaction; that row is sent by the next call.
        self._claimed = await self._claim_next()

    async def _retry_or_fail(self, row: OutboxRow, error: str) -> None:
        now = self.clock()
        outbound = self.config.outbound
        if (now - datetime.fromisoformat(row.created_at)).total_seconds() >= outbound.max_lifetime:
            await self._fail(row, error, reason="expired")
            return
        attempts = row.attempts + 1
        delay = min(outbound.retry_delay * 2 ** (attempts - 1), outbound.max_retry_delay)
        next_attempt_at = now + timedelta(seconds=delay)
        try:
            async with self.db.transaction() as store:
                await store.outbox.mark_retry(row.id, error, next_attempt_at)
        except Exception as write_error:
            self._stop(write_error)  # the lease keeps the row until it is tried again
            return
        self.metrics.retried.inc()
        log.warning("outbox.retry", **_fields(row), error=error, attempts=attempts,
                    next_attempt_at=iso(next_attempt_at))

    async def _fail(self, row: OutboxRow, error: str, *, reason: str) -> None:
        try:
            async with self.db.transaction() as store:
                await store.outbox.mark_failed(row.id, error)
        except Exception as write_error:
            self._stop(write_error)  # tried again once the lease ends; operators are told when the mark holds
            return
        self.metrics.delivery_failed.inc()
        failed = replace(row, status="failed", attempts=row.attempts + 1, last_error=error)
        log.error("outbox.failed", **_fields(row), error=error, attempts=failed.attempts, reason=reason)
        if self.on_failed is None:
            return
        try:
            await self.on_failed(failed, error)
        except Exception:
            log.exception("outbox.on_failed_error", **_fields(row))


def _delivery_id(row: OutboxRow) -> str:
    """The same for every attempt of one row, and unique beyond this database (the Message-ID is random)."""
    return f"{row.id}.{row.message_id}.{row.rcpt_to}"


def _fields(row: OutboxRow) -> dict[str, object]:
    return {"outbox_id": row.id, "message_id": row.message_id, "rcpt_to": row.rcpt_to,
            "kind": row.kind, "ticket_id": row.ticket_id}
