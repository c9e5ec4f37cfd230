"""Group commit for the SMTP side: the mails of concurrent sessions go into the inbox with one durable COMMIT.

Each session hands its mail over and waits; one writer takes every mail that
arrived meanwhile, writes them in one transaction on a connection of its own
(WAL, ``synchronous=FULL``) and answers each session only after the COMMIT
returned.  The pipeline's transactions run on the other connection: a batch
never queues behind the pipeline's lock or its statements, it waits only for
the one transaction that holds SQLite's write lock at that moment
(``storage.turn``).  While one batch commits, the next gathers: the busier
the listener, the more mails share an fsync.

The raw mail is streamed from the session's spool inside the transaction, a
chunk at a time, into a ``zeroblob`` of its size with SQLite's incremental
blob I/O: a mail is never whole in memory, however big (binding it as one
value made SQLite copy it twice, and its prepared statement kept one copy
until the next mail).  A batch is also kept to ``max_batch_bytes``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mailticketd.clock import iso, utc_now
from mailticketd.storage.inbox import write_raw
from mailticketd.storage.turn import WriteTurn

# At most this many mails in one transaction: a session waits for its batch, not for the whole queue.
MAX_BATCH = 200


class BacklogFull(Exception):
    """As many mails wait for processing as ``max_backlog`` allows: the sender should retry later."""


@dataclass(frozen=True)
class Arrival:
    """One mail as the SMTP side received it; ``chunks`` gives its ``size`` bytes in pieces (it may block: it runs
    in the writer)."""

    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str | None
    size: int
    chunks: Callable[[], Iterable[bytes]]
    max_backlog: int


@dataclass
class _Waiting:
    arrival: Arrival
    future: asyncio.Future[int] = field(repr=False)
    since: float = 0.0  # the event loop's time when the session handed its mail over


class Intake:
    """Writes arriving mails to the inbox, many sessions' mails to one COMMIT."""

    # Whether a batch waits for the pipeline's transaction in progress (SQLite: one writer at a time).
    waits_for_pipeline = True

    def __init__(self, path: Path, turn: WriteTurn, *, busy_timeout: float = 5.0,
                 max_batch_bytes: int = 64 << 20) -> None:
        self.path = path
        self.turn = turn
        self.busy_timeout = busy_timeout
        self.max_batch_bytes = max_batch_bytes
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self.batches = 0  # commits so far (the metrics and the tests read it)
        self.writing = 0  # mails in the batch being written now
        # The pending rows (for max_backlog) as of the database's data_version: counted again only when another
        # connection has committed since, plus the mails this one stored meanwhile.
        self._pending: tuple[int, int] | None = None
        self.last_commit = float("-inf")  # the event loop's time of the last commit that stored a mail

    def held_up(self) -> float | None:
        """How long the first session waiting for its commit has waited, counted from the handover of its mail; None
        when no session waits, or when its commit does not wait for the pipeline's transaction in progress
        (``waits_for_pipeline``)."""
        if not self.waits_for_pipeline or not self._waiting:
            return None
        return asyncio.get_running_loop().time() - self._waiting[0].since

    async def store(self, arrival: Arrival) -> int:
        """Write ``arrival`` durably; returns its inbox id once committed.

        Raises ``BacklogFull`` when too much mail waits, and whatever SQLite raised when the commit failed.
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(arrival, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="inbox-intake")
        return await waiting.future

    async def connect(self) -> None:
        """Open the connection now (as the daemon starts), not with the first mail: its descriptors are taken before
        clients could use up the last ones (the first mail after would be answered 451)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-intake")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        """Finish the batch being written, then close the connection."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
            self._writer = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=True)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-intake")
        while self._waiting:
            batch: list[_Waiting] = []
            try:
                # The batch is taken once it is our turn: whatever arrived while we waited joins it.
                async with self.turn.hold(urgent=True):
                    batch = self._take()
                    self.writing = len(batch)
                    try:
                        results = await asyncio.shield(self._store_batch(batch))
                    finally:
                        self.writing = 0
            except BaseException as error:  # noqa: BLE001 - every session of the batch hears of it
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(error if isinstance(error, Exception) else RuntimeError(error))
                if not isinstance(error, Exception):
                    raise
                continue
            self.batches += 1
            if any(not isinstance(result, Exception) for result in results):
                self.last_commit = loop.time()
            for waiting, result in zip(batch, results):
                if waiting.future.done():
                    continue  # the session went away meanwhile; its mail is stored all the same
                if isinstance(result, Exception):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)

    async def _store_batch(self, batch: list[_Waiting]) -> list[int | Exception]:
        """Write one batch in one transaction: each mail's inbox id, or why it was not stored."""
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._commit, batch)

    def _take(self) -> list[_Waiting]:
        """The next batch: oldest first, within ``MAX_BATCH`` mails and ``max_batch_bytes`` (at least one)."""
        batch: list[_Waiting] = []
        size = 0
        while self._waiting and len(batch) < MAX_BATCH:
            waiting = self._waiting[0]
            if batch and size + waiting.arrival.size > self.max_batch_bytes:
                break
            size += waiting.arrival.size
            batch.append(self._waiting.pop(0))
        return batch

    # -- in the writer thread ------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA secure_delete = ON")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._pending = None  # data_version is this connection's own: a new one is counted afresh
        return self._conn

    def _commit(self, batch: list[_Waiting]) -> list[int | Exception]:
        conn = self._connect()
        results: list[int | Exception] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            pending = self._backlog(conn)
            for waiting in batch:
                arrival = waiting.arrival
                if pending >= arrival.max_backlog:
                    results.append(BacklogFull())
                    continue
                conn.execute("SAVEPOINT mail")
                try:
                    inbox_id = _insert(conn, arrival)
                except Exception as error:  # noqa: BLE001 - this session's spool is gone; the others go on
                    conn.execute("ROLLBACK TO mail")
                    conn.execute("RELEASE mail")
                    results.append(error)
                    continue
                conn.execute("RELEASE mail")
                results.append(inbox_id)
                pending += 1
            conn.execute("COMMIT")
        except BaseException:
            self._pending = None  # what this batch added may not be there: counted again next time
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # no transaction was open (BEGIN or COMMIT itself failed and ended it)
            raise
        assert self._pending is not None
        self._pending = (self._pending[0], pending)
        return results

    def _backlog(self, conn: sqlite3.Connection) -> int:
        """The pending rows.  Counting them takes time that grows with them (about 25 µs a thousand), and in a storm
        every batch needs the count while the backlog grows; so they are counted again only when another connection
        (the pipeline, the web form, the CLI) has committed since the last count (SQLite's ``data_version``), and
        otherwise are the last count plus the mails stored since: the same number."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if self._pending is None or self._pending[0] != version:
            self._pending = (version, int(conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'")
                                          .fetchone()[0]))
        return self._pending[1]

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _insert(conn: sqlite3.Connection, arrival: Arrival) -> int:
    """The inbox row, then the mail streamed into a zeroblob of its size; returns the row's id."""
    cursor = conn.execute(
        "INSERT INTO inbox (received_at, peer, mail_from, rcpt_tos, message_id, size) VALUES (?, ?, ?, ?, ?, ?)",
        (iso(utc_now()), arrival.peer, arrival.mail_from, json.dumps(list(arrival.rcpt_tos)), arrival.message_id,
         arrival.size),
    )
    inbox_id = cursor.lastrowid
    assert inbox_id is not None
    write_raw(conn, inbox_id, arrival.chunks(), arrival.size)
    return inbox_id
