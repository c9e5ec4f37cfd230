"""The SQLite backend: its connection, its writer lock, migrations, and transactions.

One connection serves the whole process, guarded by an ``asyncio.Lock``:
two tasks sharing a connection without one lose each other's writes.  Every
write runs in ``BEGIN IMMEDIATE`` so it never fails half-way on an upgrade
from a read lock.  ``synchronous=FULL`` makes a commit durable before the
SMTP side answers ``250``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite
import structlog

from mailticketd.storage.base import Database, SchemaTooNew, Store
from mailticketd.storage.connection import SqliteConnection
from mailticketd.storage.dialect import SQLITE
from mailticketd.storage.inbox import raw_chunks
from mailticketd.storage.intake import Intake
from mailticketd.storage.turn import WriteTurn

__all__ = ["SqliteDatabase", "SchemaTooNew", "Store"]

log = structlog.get_logger("mailticketd.storage")

# In a storm (more work waiting behind a transaction) a small transaction commits in the event loop's thread while
# its COMMITs take less than this on average (a fast disk): a trip to the database thread and back costs more than
# writing a few pages and one fsync of the log.  Past it (a slow disk, a busy machine), and whenever no work waits
# (then the SMTP sessions' latency counts more than the pipeline's throughput), COMMIT runs in the database thread.
QUICK_COMMIT = 0.002
# This connection checkpoints the log itself, in the database thread, every so many commits (about SQLite's own
# 1,000 pages for ordinary mail); the intake's connection keeps SQLite's automatic checkpoints in its own thread.
CHECKPOINT_EVERY = 25


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("mailticketd.storage").joinpath("migrations", "sqlite")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


class SqliteDatabase(Database):
    """An open SQLite database in WAL mode with one guarded writer connection.

    The SMTP side writes arriving mail through ``intake`` instead: a connection of its own that commits
    concurrent sessions' mails together, so they never wait for the pipeline's lock.
    """

    dialect = SQLITE

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._turn = WriteTurn()
        self._commits = 0
        self.commits_in_thread = 0  # for the tests' and the operator's eyes
        self._commit_seconds = 0.0  # a running mean of how long a small transaction's COMMIT takes
        self.intake = Intake(path, self._turn, busy_timeout=busy_timeout)

    async def open(self) -> None:
        """Connect, set the pragmas and bring the schema up to date."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: a write transaction runs its short statements in the event loop's thread
        # (storage.connection), between the statements aiosqlite runs in its own.
        conn = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint
            # What is deleted or replaced (a sent mail's verification link) is overwritten, not left in free
            # pages that a backup would copy.
            await conn.execute("PRAGMA secure_delete = ON")
            await self._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connections; safe to call twice."""
        await self.intake.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            async with self._lock:
                await conn.close()

    @property
    def describe(self) -> str:
        return str(self.path)

    @property
    def schema_version(self) -> int:
        return max(version for version, _ in _migrations())

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        """Apply pending migrations under the write lock; a current schema needs no write at all."""
        known = self.schema_version
        current = await _user_version(conn)
        if current > known:
            raise SchemaTooNew(current, known)
        if current == known:
            return
        await conn.execute("BEGIN IMMEDIATE")
        try:
            current = await _user_version(conn)  # another process may have migrated meanwhile
            if current > known:
                raise SchemaTooNew(current, known)
            for version, script in _migrations():
                if version > current:
                    for statement in _statements(script):
                        await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version = {version}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def transaction(self, *, backlog: bool = False) -> AsyncIterator[Store]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        conn = self._require()
        async with self._lock:
            async with self._turn.hold():
                try:
                    await self._begin(conn)
                    connection = SqliteConnection(conn, _sqlite(conn))
                    yield Store(connection)
                    await self._commit(conn, quick=backlog and not connection.heavy)
                except BaseException:
                    # Also after a cancellation mid-BEGIN or a failed COMMIT: the connection must leave
                    # the lock outside any transaction, or every later BEGIN fails.
                    await asyncio.shield(_rollback(conn))
                    raise
            if self._commits % CHECKPOINT_EVERY == 0:  # after the turn: the intake commits meanwhile
                await self._checkpoint(conn)

    async def _commit(self, conn: aiosqlite.Connection, *, quick: bool) -> None:
        """``COMMIT``: a small transaction's in a storm at once while commits are quick (``QUICK_COMMIT``), else in
        the database thread."""
        started = time.perf_counter()
        if quick and self._commit_seconds < QUICK_COMMIT:
            _sqlite(conn).execute("COMMIT")
        else:
            await conn.execute("COMMIT")
            self.commits_in_thread += 1
        self._commits += 1
        if quick:  # what the disk takes now: a slow one sends the commits back to the thread
            self._commit_seconds += (time.perf_counter() - started - self._commit_seconds) / 8

    async def _checkpoint(self, conn: aiosqlite.Connection) -> None:
        """Copy the log into the database file, in the database thread (this connection checkpoints only here, so
        never inside a commit made in the event loop's thread); a failure is left for the next one."""
        try:
            await conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")  # its row read: the statement ends
        except Exception as error:  # the transaction is committed: nothing here may report it failed
            log.warning("storage.checkpoint_failed", error=f"{type(error).__name__}: {error}")

    async def _begin(self, conn: aiosqlite.Connection) -> None:
        """``BEGIN IMMEDIATE``: at once when the write lock is free (in this process it is whenever it is our
        turn), else waiting for another process in aiosqlite's thread, up to the busy timeout."""
        inline = _sqlite(conn)
        inline.execute("PRAGMA busy_timeout = 0")
        try:
            inline.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError:
            pass  # locked by another process (the staff CLI): wait for it off the event loop
        finally:
            inline.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        await conn.execute("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Store]:
        """A consistent read of the current state."""
        conn = self._require()
        async with self._lock:
            try:
                await conn.execute("BEGIN")
                yield Store(SqliteConnection(conn))
            finally:
                await asyncio.shield(_rollback(conn))

    def claims(self) -> AbstractAsyncContextManager[Store]:
        """A read: one daemon works on an SQLite database, so queue rows need no claim."""
        return self.read()

    def raw_chunks(self, inbox_id: int) -> Iterator[bytes]:
        """A stored mail's bytes in pieces, for a mail that ``next_due_batch`` left without them (blocking: iterate
        it in a worker thread; it reads through a connection of its own)."""
        return raw_chunks(self.path, inbox_id)

    async def backup(self, target: Path) -> None:
        """A consistent copy of the live database at ``target`` (SQLite's online backup API)."""
        conn = self._require()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.unlink(missing_ok=True)
        async with aiosqlite.connect(partial) as copy:
            await conn.backup(copy)
        partial.replace(target)

    def _require(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the database is not open")
        return self._conn


def _sqlite(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The SQLite connection under aiosqlite's (its ``_conn``; aiosqlite is pinned)."""
    return conn._conn


async def _rollback(conn: aiosqlite.Connection) -> None:
    """End whatever transaction is open (runs after any statement still queued on the connection)."""
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # no transaction was open


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our scripts keep ';' out of strings)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
