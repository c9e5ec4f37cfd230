"""Take pending inbox rows in order and run the pipeline over each; a mail's decisions are one transaction, which
in a storm holds several mails (all committed, or each processed again alone; cut short after a mail once an SMTP
session has waited for its commit)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple

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
# half of them are done (or the last of them is parsed).  Once the SMTP side is quiet (below), more than a group
# holds; while it stores mail, fewer: parsing far ahead then takes the processor from the senders.
LOOK_AHEAD = 16
QUIET_LOOK_AHEAD = 48
LOOK_AHEAD_BYTES = 4 << 20
# In a storm, mails whose parsing is done are processed several in one transaction, one after the other: one
# commit (one fsync) and one trip to the letter-writing thread for all of them.  As many as fit in GROUP_WINDOW
# seconds by the recent time a mail took, at most GROUP: the SMTP side's commits wait for the transaction in
# progress, so its length is what a sender may wait for its 250 beyond its own commit.
GROUP = 8
GROUP_WINDOW = 0.015
GROUP_BYTES = 1 << 20  # big mails take long to store whatever the mean says: a group holds at most this much mail
# Once the SMTP side has stored nothing for QUIET_AFTER seconds (the storm is in, its backlog is left), no sender
# waits behind a transaction but the next one to arrive: groups grow to QUIET_WINDOW seconds, QUIET_GROUP mails.
QUIET_AFTER = 0.05
QUIET_GROUP = 32
QUIET_WINDOW = 0.1
QUIET_BYTES = 4 << 20

# A transaction of several mails ends after the mail in progress once an SMTP session has waited this long for it.
HOLD_UP = 0.005

# A mail whose steps ran: its context, and the Discard that ended them early (None when they all ran).
Decided = tuple[Context, Discard | None]


class Setup(NamedTuple):
    """What a transaction's mails are processed with."""

    config: Config
    pipeline: Pipeline
    services: Services


class InboxWorker(QueueWorker):
    """Process the inbox in order, a mail after the one before; a failing mail is kept and retried, never lost."""

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
        # How long a mail's processing took of late (a running mean): the groups' size follows from it.
        self.mail_seconds = GROUP_WINDOW
        self.group_window = GROUP_WINDOW  # while the SMTP side stores mail
        self.quiet_window = QUIET_WINDOW  # once it has been quiet for QUIET_AFTER
        self.hold_up = HOLD_UP
        self.grouped_mails = 0  # mails committed in a group of several
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
        while handled := await self._process_some():
            count += handled
        return count

    async def parsed(self) -> None:
        """Wait until every row read ahead is parsed (for tests that look at how mails are grouped)."""
        await asyncio.gather(*(preparing for _, preparing in self._ahead), return_exceptions=True)

    async def _defer_to_smtp(self) -> None:
        """Wait while the SMTP side is busy committing mail (both share one interpreter), at most MAX_DEFER."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_DEFER
        while (now := loop.time()) < deadline and now - self.db.intake.last_commit < BUSY_WINDOW:
            await asyncio.sleep(BUSY_WINDOW)

    async def process_next(self) -> bool:
        """Process the oldest due row (with the parsed ones after it, in a storm); False when there is none."""
        return await self._process_some() > 0

    async def _process_some(self) -> int:
        """Process the oldest due row, or a group of rows whose parsing is done; how many were handled."""
        async with self._reading:
            if not self._ahead:
                await self._defer_to_smtp()  # once a read-ahead: the rows read are processed without a pause
                await self._read_ahead()
            elif self._more and (len(self._ahead) <= (limit := self._look_ahead()) // 2
                                 or len(self._ahead) < limit and _parsed(self._ahead[-1][1])):
                # Topped up before the parse processes run dry (half the rows ahead are left, or the last of them
                # is parsed): the rows after the last one read (and rows that failed before and are due again) are
                # parsed while the ones ahead are processed.
                await self._defer_to_smtp()
                await self._read_ahead(after=self._ahead[-1][0].id)
            if not self._ahead:
                return 0
            group = [self._ahead.popleft()]
            size, room = self._group_limits()
            room -= group[0][0].size
            while (_parsed(group[0][1]) and self._ahead and len(group) < size and _parsed(self._ahead[0][1])
                   and self._ahead[0][0].size <= room):
                room -= self._ahead[0][0].size
                group.append(self._ahead.popleft())
            self._taken.update(row.id for row, _ in group)
        waiting = deque(group)
        try:
            if len(group) > 1 and (done := await self._process_group([(row, preparing.result())
                                                                         for row, preparing in group])):
                for _ in range(done):
                    waiting.popleft()
                return done  # the rest of a group cut short comes next, first in line
            while waiting:  # one by one: alone, or again after its group failed
                await self._process_alone(*waiting[0])
                waiting.popleft()
            return len(group)
        finally:
            # Rows not processed (the database failed even to record a failure, or the daemon stops) stay first in
            # line: a later mail is never processed before them.
            self._ahead.extendleft(reversed(waiting))
            self._taken.difference_update(row.id for row, _ in group)

    def _quiet(self) -> bool:
        """The SMTP side has stored no mail for QUIET_AFTER seconds."""
        return asyncio.get_running_loop().time() - self.db.intake.last_commit >= QUIET_AFTER

    def _look_ahead(self) -> int:
        """How many rows are read ahead now."""
        return QUIET_LOOK_AHEAD if self._quiet() else LOOK_AHEAD

    def _group_limits(self) -> tuple[int, int]:
        """How many mails, and how many bytes of mail, the next transaction may hold: few while the SMTP side stores
        mail (its commits wait for ours), more once it has been quiet."""
        if self._quiet():
            return max(1, min(QUIET_GROUP, int(self.quiet_window / self.mail_seconds))), QUIET_BYTES
        return max(1, min(GROUP, int(self.group_window / self.mail_seconds))), GROUP_BYTES

    async def _process_alone(self, row: InboxRow, preparing: asyncio.Future[PreparedMail]) -> None:
        with structlog.contextvars.bound_contextvars(inbox_id=row.id, message_id=row.message_id):
            try:
                prepared = await preparing
                busy = await self._process(row, prepared)
            except Exception as error:
                await self._record_failure(row, error)
            else:
                self._took(busy, 1)

    def _took(self, seconds: float, mails: int) -> None:
        self.mail_seconds += (seconds / mails - self.mail_seconds) / 8

    async def _process_group(self, group: list[tuple[InboxRow, PreparedMail]]) -> int:
        """Process ``group`` in one transaction, each mail's steps after the one before; how many of its first mails
        were committed (fewer than all when an SMTP session came to wait for the transaction), or 0 (and nothing
        committed) when any of them failed: each is then processed again alone, so a mail fails on its own."""
        try:
            done, busy = await self._in_one_transaction(group)
        except Exception as error:
            log.info("inbox.group_failed", mails=len(group), error=f"{type(error).__name__}: {error}")
            return 0
        self._took(busy, len(done))
        if len(done) > 1:
            self.grouped_mails += len(done)
        for row, decided in done:
            with structlog.contextvars.bound_contextvars(inbox_id=row.id, message_id=row.message_id):
                self._committed(row, decided)
        return len(done)

    async def _read_ahead(self, after: int = 0) -> None:
        """Read (claim, where daemons share the database) the next due rows (past the id ``after``) and start parsing
        them, in order, in the background."""
        now = self.clock()
        room = self._look_ahead() - len(self._ahead)
        if room <= 0:  # mail came in meanwhile: the look-ahead is smaller again
            return
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

    def _setup(self) -> Setup:
        """The configuration, pipeline and services of now, for a whole transaction: a reload meanwhile (SIGHUP)
        changes the next transaction, never the mails of one half and half."""
        return Setup(self.config, self.pipeline, self.services)

    async def _process(self, row: InboxRow, prepared: PreparedMail) -> float:
        """Process one mail in a transaction of its own; the seconds its work took."""
        [(_, decided)], busy = await self._in_one_transaction([(row, prepared)])
        self._committed(row, decided)
        return busy

    async def _in_one_transaction(self, mails: list[tuple[InboxRow, PreparedMail]]
                                  ) -> tuple[list[tuple[InboxRow, Decided | None]], float]:
        """Run the pipeline over ``mails``, one after the other, in one transaction with their letters written just
        before the commit; raises (nothing committed) when any of them fails.  Between two mails the SMTP sessions
        go on, and once one of them has waited ``hold_up`` seconds for its commit the transaction ends there: a
        sender waits for one mail's decisions, not for a group's.  Returns the mails processed (the first ones of
        ``mails``) and the seconds the transaction took, less those it let the SMTP sessions have."""
        setup = self._setup()
        letters = LetterBatch()
        done: list[tuple[InboxRow, Decided | None]] = []
        given_away = 0.0
        async with self.db.transaction(backlog=bool(self._ahead)) as store:
            started = time.perf_counter()  # once the write lock is ours: waiting for it is not this group's work
            for row, prepared in mails:
                if done:
                    paused = time.perf_counter()
                    await asyncio.sleep(0)
                    given_away += time.perf_counter() - paused
                    if (waited := self.db.intake.held_up()) is not None and waited >= self.hold_up:
                        break
                with structlog.contextvars.bound_contextvars(inbox_id=row.id, message_id=row.message_id):
                    done.append((row, await self._decide(store, row, prepared, setup, letters)))
            await setup.services.mailer.flush(store, letters)  # the mailer the letters were queued with
        for _, decided in done:
            if decided is not None:
                ctx, _discarded = decided
                given_away += ctx.given_away
        return done, time.perf_counter() - started - given_away

    async def _decide(self, store: Store, row: InboxRow, prepared: PreparedMail, setup: Setup,
                      letters: LetterBatch) -> Decided | None:
        """Run the pipeline over one mail inside the caller's transaction and mark its row done; its letters wait in
        ``letters``.  None when another daemon took the mail over."""
        if not await store.inbox.still_claimed(row.id, self.db.owner):
            # Our lease ended and another daemon took the mail (it is theirs), or it is done already.
            log.warning("mail.taken_over")
            return None
        envelope = Envelope(peer=row.peer, mail_from=row.mail_from, rcpt_tos=row.rcpt_tos,
                            web=WebOrigin.from_row(row.origin))
        ctx = Context(inbox_id=row.id, envelope=envelope, mail=prepared.mail, visible_text=prepared.visible_text,
                      store=store, config=setup.config, services=setup.services, now=self.clock(),
                      new_text=prepared.new_text, letters=letters)
        try:
            await setup.pipeline.run(ctx)
        except Discard as outcome:
            await store.inbox.mark_done(row.id, decision=outcome.reason, ticket_id=outcome.ticket_id)
            return ctx, outcome
        ticket = ctx.ticket
        await store.inbox.mark_done(row.id, decision=ctx.decision, ticket_id=ticket.id if ticket else None)
        return ctx, None

    def _committed(self, row: InboxRow, decided: Decided | None) -> None:
        """Count and log a mail whose decisions are committed."""
        if decided is None:
            return
        ctx, discarded = decided
        if discarded is not None:
            self._count(row, discarded.reason)
            log.info("mail.processed", decision=discarded.reason, author=ctx.author_address)
            return
        ticket = ctx.ticket
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
        final = retry_at is None  # kept as failed: somebody must look at it, told in the same commit
        told = notice_failed = False
        try:
            async with self.db.transaction() as store:
                if await store.inbox.mark_attempt_failed(row.id, reason=reason, retry_at=retry_at) and final:
                    try:
                        await self._tell_operators(store, row, reason)
                    except Exception:
                        notice_failed = True
                        raise
                    told = True
        except Exception:
            if not notice_failed:
                raise
            log.exception("mail.failed_notice_error")  # the row is marked failed all the same, untold
            async with self.db.transaction() as store:
                await store.inbox.mark_attempt_failed(row.id, reason=reason, retry_at=retry_at)
        self.metrics.failed.inc()
        if told and self.on_committed is not None:
            self.on_committed()  # the operators' letters wait in the outbox
        log.error("mail.failed", reason=reason, attempts=attempts, final=final,
                  exc_info=error)


def _parsed(preparing: asyncio.Future[PreparedMail]) -> bool:
    """The mail is parsed and ready (not failed: a failing one is handled alone)."""
    return preparing.done() and not preparing.cancelled() and preparing.exception() is None
