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
twice: the daemon ends every lease when it starts.  Towards a relay that is
at most one mail, as each is marked before the next is claimed; the maildir,
where a repeat replaces its copy, takes up to ``BATCH`` rows a claim (and at
most ``BATCH_BYTES`` of mail in all, the first whatever its size) and writes
them in one go.
"""

from __future__ import annotations

from collections import deque
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

# Rows claimed, sent and marked together where the transport writes several mails at once: at most BATCH, holding at
# most BATCH_BYTES of mail in all, the first whatever its size (an operator's notice quotes all a customer wrote:
# without it, a claim of big notices held them all in memory at once).
BATCH = 32
BATCH_BYTES = 8 << 20

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
        self._claimed: deque[OutboxRow] = deque()  # claimed with the last marks, not sent yet
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
        while rows := await self._next_rows():
            again = [row for row in rows if row.id in handled]
            if again:  # due once more (a retry whose time has come): kept, as claimed, for the next call
                self._claimed.extend(again)
                rows = [row for row in rows if row.id not in handled]
            handled.update(row.id for row in rows)
            if rows:
                await self._deliver(rows)
            if again:
                break
        return len(handled)

    async def process_next(self) -> bool:
        """Send the rows that have been due longest (one, or a batch where the transport writes several at once);
        False when none is due or the database cannot be written."""
        rows = await self._next_rows()
        if not rows:
            return False
        await self._deliver(rows)
        return True

    @property
    def _batch(self) -> int:
        """Rows claimed at once: several only where a repeat replaces its copy (the maildir), since every mail of a
        batch is sent before any is marked; a relay gets one mail a claim, so a crash repeats at most one."""
        return BATCH if hasattr(self.transport, "send_batch") else 1

    async def _next_rows(self) -> list[OutboxRow]:
        if self._claimed:
            # At most a batch: rows claimed for the maildir before a reload switched to a relay go one at a time.
            return [self._claimed.popleft() for _ in range(min(self._batch, len(self._claimed)))]
        return await self._claim_next()

    async def _claim_next(self) -> list[OutboxRow]:
        """In one transaction: end a previous run's leases (once), mark what was sent as sent, claim the next rows.

        Nothing is claimed, so nothing sent, until every earlier send is marked: a send is remembered before the
        next one can happen.
        """
        now = self.clock()
        limit = max(0, self._batch - len(self._claimed))
        try:
            async with self.db.transaction(backlog=len(self._unrecorded) > 1) as store:
                if not self._leases_released:
                    await store.outbox.release_leases()
                if self._unrecorded:
                    await store.outbox.mark_all_sent(self._unrecorded.items())
                rows = await store.outbox.claim_due(
                    now, now + timedelta(seconds=self.config.outbound.send_lease), limit=limit,
                    max_bytes=BATCH_BYTES) if limit else []
        except Exception as error:
            self._stop(error)
            return []
        self._leases_released = True
        self._unrecorded.clear()
        self._resume()
        return rows

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

    async def _deliver(self, rows: list[OutboxRow]) -> None:
        outcomes = await self._send(rows)
        for row, outcome in zip(rows, outcomes):
            if outcome is None:
                self._unrecorded[row.id] = self.clock()
                self.metrics.sent.inc()
                log.info("outbox.sent", **_fields(row))
            elif isinstance(outcome, PermanentFailure):
                await self._fail(row, outcome.message, reason="permanent")
            elif isinstance(outcome, TemporaryFailure):
                await self._retry_or_fail(row, outcome.message)
            else:
                # A bug in a transport must not stall the queue: treat it as temporary, keep the trace.
                log.error("outbox.transport_error", **_fields(row), exc_info=outcome)
                await self._retry_or_fail(row, f"{type(outcome).__name__}: {outcome}")
        if self._unrecorded:
            # The marks and the next rows' claim share a transaction; those rows are sent by the next call.
            self._claimed.extend(await self._claim_next())

    async def _send(self, rows: list[OutboxRow]) -> list[Exception | None]:
        """Hand the rows to the transport; per row, None or why it failed."""
        send_batch = getattr(self.transport, "send_batch", None)
        if send_batch is not None and len(rows) > 1:
            try:
                outcomes: list[Exception | None] = await send_batch(
                    [(row.mail_from, row.rcpt_to, row.raw, _delivery_id(row)) for row in rows])
            except Exception as error:
                return [error] * len(rows)
            return outcomes
        outcomes = []
        for row in rows:
            assert row.raw is not None
            try:
                await self.transport.send(row.mail_from, row.rcpt_to, row.raw, delivery_id=_delivery_id(row))
            except Exception as error:
                outcomes.append(error)
            else:
                outcomes.append(None)
        return outcomes

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
