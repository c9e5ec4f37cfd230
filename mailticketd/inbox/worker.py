"""Take pending inbox rows in order and run the pipeline over each inside one transaction."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial
from datetime import datetime, timedelta

import structlog

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.inbox.prepare import PreparedMail, Preparer
from mailticketd.metrics import Metrics
from mailticketd.pipeline.context import Context, Envelope, Services, WebOrigin
from mailticketd.pipeline.order import Pipeline
from mailticketd.pipeline.outcomes import Discard, Failure
from mailticketd.queue_worker import QueueWorker
from mailticketd.outbox.mailer import Letter, LetterBatch
from mailticketd.storage import Database, Store
from mailticketd.storage.inbox import InboxRow

log = structlog.get_logger("mailticketd.inbox")

# While mail streams in, accepting it comes first: before reading the next rows, processing waits while the
# SMTP side committed within BUSY_WINDOW seconds, but never longer than MAX_DEFER seconds in a row.
BUSY_WINDOW = 0.01
MAX_DEFER = 0.1
# Rows read ahead and parsed in the background while the one before them is in its transaction; topped up when
# half of them are done.
LOOK_AHEAD = 16
LOOK_AHEAD_BYTES = 4 << 20


class InboxWorker(QueueWorker):
    """Process the inbox one mail at a time; a failing mail is kept and retried, never lost."""

    name = "inbox"

    def __init__(self, db: Database, config: Config, pipeline: Pipeline, services: Services,
                 clock: Callable[[], datetime] = utc_now, on_committed: Callable[[], None] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.db = db
        self.config = config
        self.pipeline = pipeline
        self.services = services
        self.on_committed = on_committed
        self.metrics = metrics or Metrics()
        self.clock = clock
        # Parsing (CPU) of the next rows overlaps the current row's transaction (waiting for the database), in
        # processes of their own beside the interpreter lock (or, for big mails, in one thread).
        self.preparer = Preparer(config.inbox.parse_processes)
        self._ahead: deque[tuple[InboxRow, asyncio.Future[PreparedMail]]] = deque()
        self._taken: set[int] = set()  # rows handed out and not finished: never read ahead a second time
        self._reading = asyncio.Lock()
        self._more = False  # the last read filled the look-ahead
        self._warming: asyncio.Task[None] | None = None
        super().__init__()

    @property
    def poll_interval(self) -> float:
        return self.config.inbox.poll_interval

    async def run(self) -> None:
        self._warming = asyncio.create_task(self.preparer.warm())  # the pool is up before a storm needs it
        try:
            await super().run()
        finally:
            await self.close()

    async def close(self) -> None:
        """Drop the rows read ahead (they stay pending in the database) and end the parse processes."""
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        for _, preparing in self._ahead:
            preparing.cancel()
        await asyncio.gather(*(preparing for _, preparing in self._ahead), return_exceptions=True)
        self._ahead.clear()
        await self.preparer.close()

    async def drain(self) -> int:
        """Process every due row now; returns how many were handled."""
        count = 0
        while await self.process_next():
            count += 1
        return count

    async def _defer_to_smtp(self) -> None:
        """Wait while the SMTP side is busy committing mail (both share one interpreter), at most MAX_DEFER."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_DEFER
        while (now := loop.time()) < deadline and now - self.db.intake.last_commit < BUSY_WINDOW:
            await asyncio.sleep(BUSY_WINDOW)

    async def process_next(self) -> bool:
        """Process the oldest due row; False when there is none."""
        async with self._reading:
            if not self._ahead:
                await self._defer_to_smtp()  # once a read-ahead: the rows read are processed without a pause
                await self._read_ahead()
            elif self._more and len(self._ahead) <= LOOK_AHEAD // 2:
                # Topped up before the parse processes run dry: the rows after the last one read (and rows that
                # failed before and are due again) are parsed while the ones ahead are processed.
                await self._defer_to_smtp()
                await self._read_ahead(after=self._ahead[-1][0].id)
            if not self._ahead:
                return False
            row, preparing = self._ahead.popleft()
            self._taken.add(row.id)
        with structlog.contextvars.bound_contextvars(inbox_id=row.id, message_id=row.message_id):
            try:
                prepared = await preparing
                await self._process(row, prepared)
            except Exception as error:
                await self._record_failure(row, error)
            finally:
                self._taken.discard(row.id)
        return True

    async def _read_ahead(self, after: int = 0) -> None:
        """Read (claim, where daemons share the database) the next due rows (past the id ``after``) and start parsing
        them, in order, in the background."""
        now = self.clock()
        room = LOOK_AHEAD - len(self._ahead)
        async with self.db.claims() as store:
            items = await store.inbox.claim_due_batch(
                now, owner=self.db.owner, lease_until=now + timedelta(seconds=self.config.inbox.claim_lease),
                limit=room, max_bytes=LOOK_AHEAD_BYTES, after=after)
        self._more = len(items) == room  # more rows may be waiting: worth topping up
        self.preparer.resize(self.config.inbox.parse_processes)  # a reload may have changed it
        ahead = {row.id for row, _ in self._ahead}  # a retried row can come again with a top-up: once is enough
        items = [(row, raw) for row, raw in items if row.id not in self._taken and row.id not in ahead]
        # The pool's mails go to it in a few tasks together; each of the others (big ones) in a task of its own.
        pooled = [(row, raw) for row, raw in items if raw is not None and self.preparer.pooled(raw)]
        started = dict(zip((row.id for row, _ in pooled),
                           self.preparer.start([(raw, row.origin is not None) for row, raw in pooled])))
        for row, raw in items:
            if row.id in started:
                self._ahead.append((row, started[row.id]))
                continue
            with structlog.contextvars.bound_contextvars(inbox_id=row.id, message_id=row.message_id):
                # The task copies the context: the parser's log lines name the mail.
                source = raw if raw is not None else partial(self.db.raw_chunks, row.id)  # a big mail: in pieces
                task = asyncio.create_task(self.preparer.prepare(source, whole=row.origin is not None))
            self._ahead.append((row, task))

    async def _process(self, row: InboxRow, prepared: PreparedMail) -> None:
        envelope = Envelope(peer=row.peer, mail_from=row.mail_from, rcpt_tos=row.rcpt_tos,
                            web=WebOrigin.from_row(row.origin))
        letters = LetterBatch()
        async with self.db.transaction(backlog=bool(self._ahead)) as store:
            if not await store.inbox.still_claimed(row.id, self.db.owner):
                log.warning("mail.taken_over")  # our lease ended and another daemon took the mail: it is theirs
                return
            ctx = Context(inbox_id=row.id, envelope=envelope, mail=prepared.mail, visible_text=prepared.visible_text,
                          store=store, config=self.config, services=self.services, now=self.clock(),
                          new_text=prepared.new_text, letters=letters)
            try:
                await self.pipeline.run(ctx)
            except Discard as outcome:
                await ctx.services.mailer.flush(store, letters)
                await store.inbox.mark_done(row.id, decision=outcome.reason, ticket_id=outcome.ticket_id)
                self._count(row, outcome.reason)
                log.info("mail.processed", decision=outcome.reason, author=ctx.author_address)
                return
            await ctx.services.mailer.flush(store, letters)  # the mailer the letters were queued with
            ticket = ctx.ticket
            await store.inbox.mark_done(row.id, decision=ctx.decision, ticket_id=ticket.id if ticket else None)
        self._count(row, ctx.decision)
        if self.on_committed is not None:
            self.on_committed()  # outgoing mail may be waiting
        log.info(
            "mail.processed", decision=ctx.decision, ticket=ticket.number if ticket else None,
            via=ctx.candidate.via if ctx.candidate else None, author=ctx.author_address,
            kind=ctx.kind, flags=ctx.flags, vms=ctx.vm_names,
        )

    async def _tell_operators(self, store: Store, row: InboxRow, reason: str) -> None:
        context = {"inbox_id": row.id, "reason": reason, "mail_from": row.mail_from, "message_id": row.message_id,
                   "received_at": row.received_at}
        for operator in self.config.operators.addresses:
            await self.services.mailer.send(store, Letter("inbox-failed", "inbox_failed", operator, context,
                                                          self.config.mail.default_language), now=self.clock())
        if self.on_committed is not None:
            self.on_committed()

    def _count(self, row: InboxRow, decision: str) -> None:
        self.metrics.processed.labels(decision=decision).inc()
        waited = (self.clock() - datetime.fromisoformat(row.received_at)).total_seconds()
        self.metrics.latency.observe(max(0.0, waited))

    async def _record_failure(self, row: InboxRow, error: Exception) -> None:
        attempts = row.attempts + 1
        reason = error.reason if isinstance(error, Failure) else f"{type(error).__name__}: {error}"
        retry_at: datetime | None = None
        if attempts < self.config.inbox.max_attempts:
            retry_at = self.clock() + timedelta(seconds=self.config.inbox.retry_delay * 2 ** (attempts - 1))
        async with self.db.transaction() as store:
            await store.inbox.mark_attempt_failed(row.id, reason=reason, retry_at=retry_at)
        self.metrics.failed.inc()
        if retry_at is None:  # kept as failed: somebody must look at it
            try:
                async with self.db.transaction() as store:
                    await self._tell_operators(store, row, reason)
            except Exception:
                log.exception("mail.failed_notice_error")  # the row is marked failed all the same
        log.error("mail.failed", reason=reason, attempts=attempts, final=retry_at is None,
                  exc_info=error)
