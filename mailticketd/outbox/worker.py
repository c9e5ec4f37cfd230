"""Send due outbox rows through the transport: retry temporary failures, give up on permanent ones.

The database lock is never held while the transport talks to the far side:
the row is read, the lock released, the mail sent, and the outcome written
in a short transaction of its own right after.  A crash between the send
and that write is the only way a mail can go out twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
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
        super().__init__()

    @property
    def poll_interval(self) -> float:
        return self.config.outbound.poll_interval

    async def drain(self) -> int:
        """Send every row that is due now, each at most once; returns how many were handled."""
        handled: set[int] = set()
        while (row := await self._next_due()) is not None and row.id not in handled:
            handled.add(row.id)
            await self._deliver(row)
        return len(handled)

    async def process_next(self) -> bool:
        """Send the row that has been due longest; False when none is due."""
        row = await self._next_due()
        if row is None:
            return False
        await self._deliver(row)
        return True

    async def _next_due(self) -> OutboxRow | None:
        async with self.db.read() as store:
            return await store.outbox.next_due(self.clock())

    async def _deliver(self, row: OutboxRow) -> None:
        assert row.raw is not None
        try:
            await self.transport.send(row.mail_from, row.rcpt_to, row.raw)
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
        async with self.db.transaction() as store:
            await store.outbox.mark_sent(row.id, now=self.clock())
        self.metrics.sent.inc()
        log.info("outbox.sent", **_fields(row))

    async def _retry_or_fail(self, row: OutboxRow, error: str) -> None:
        now = self.clock()
        outbound = self.config.outbound
        if (now - datetime.fromisoformat(row.created_at)).total_seconds() >= outbound.max_lifetime:
            await self._fail(row, error, reason="expired")
            return
        attempts = row.attempts + 1
        delay = min(outbound.retry_delay * 2 ** (attempts - 1), outbound.max_retry_delay)
        next_attempt_at = now + timedelta(seconds=delay)
        async with self.db.transaction() as store:
            await store.outbox.mark_retry(row.id, error, next_attempt_at)
        self.metrics.retried.inc()
        log.warning("outbox.retry", **_fields(row), error=error, attempts=attempts,
                    next_attempt_at=iso(next_attempt_at))

    async def _fail(self, row: OutboxRow, error: str, *, reason: str) -> None:
        async with self.db.transaction() as store:
            await store.outbox.mark_failed(row.id, error)
        self.metrics.delivery_failed.inc()
        failed = replace(row, status="failed", attempts=row.attempts + 1, last_error=error)
        log.error("outbox.failed", **_fields(row), error=error, attempts=failed.attempts, reason=reason)
        if self.on_failed is None:
            return
        try:
            await self.on_failed(failed, error)
        except Exception:
            log.exception("outbox.on_failed_error", **_fields(row))


def _fields(row: OutboxRow) -> dict[str, object]:
    return {"outbox_id": row.id, "message_id": row.message_id, "rcpt_to": row.rcpt_to,
            "kind": row.kind, "ticket_id": row.ticket_id}
