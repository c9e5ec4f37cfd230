"""The PostgreSQL backend: a pool of connections, migrations under an advisory lock, serialised writers.

Write transactions (the pipeline's, the delivery worker's, the web's and the
staff CLI's) take one transaction-level advisory lock first, so they run one
after another across every daemon on the database, exactly as SQLite's single
writer does.  What runs beside them: reads, the SMTP side's inserts of
arriving mail (``PostgresIntake``) and the claims of inbox rows
(``claims()``, with ``FOR UPDATE SKIP LOCKED``), so receiving, parsing and
sending are parallel across daemons.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from mailticketd.storage.base import Database, SchemaTooNew, Store
from mailticketd.storage.dialect import POSTGRESQL
from mailticketd.storage.postgresql.connection import PostgresConnection
from mailticketd.storage.postgresql.intake import PostgresIntake

# Advisory lock keys (any 64-bit numbers no other application on the database uses): "mtd" + a purpose.
WRITE_LOCK = 0x6D7464_0001
MIGRATE_LOCK = 0x6D7464_0002
POOL_SIZE = 6
# How long closing waits for connections still in use before it cuts them (well inside systemd's TimeoutStopSec).
CLOSE_TIMEOUT = 10.0

log = structlog.get_logger("mailticketd.storage")


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("mailticketd.storage").joinpath("migrations", "postgresql")
    found = [(int(entry.name.split("_", 1)[0]), entry.read_text("utf-8"))
             for entry in folder.iterdir() if entry.name.endswith(".sql")]
    return sorted(found)


def public_url(url: str) -> str:
    """``url`` as it may be shown and logged: without a password (the config refuses one anyway)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase(Database):
    """A PostgreSQL database that any number of daemons share."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, password: str | None = None, connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self._password = password
        self._timeout = connect_timeout
        self.close_timeout = CLOSE_TIMEOUT
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()  # this process's writers queue here, not on a connection each
        self.intake = PostgresIntake(self._connect)

    @property
    def describe(self) -> str:
        return public_url(self.url)

    @property
    def schema_version(self) -> int:
        return max(version for version, _ in _migrations())

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url, password=self._password, timeout=self._timeout)

    async def open(self) -> None:
        """Bring the schema up to date (once, whoever starts first), then open the pool."""
        conn = await self._connect()
        try:
            await self._migrate(conn)
        finally:
            await conn.close()
        self._loop = asyncio.get_running_loop()
        self._pool = await asyncpg.create_pool(self.url, password=self._password, timeout=self._timeout,
                                               min_size=1, max_size=POOL_SIZE)

    async def close(self) -> None:
        await self.intake.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(self._close_pool(pool), self.close_timeout)
            except TimeoutError:
                # A writer or a connection that never comes back (a statement the server never answers, or the
                # pool's bookkeeping after the server went away) must not keep the daemon from stopping.
                log.warning("database.connections_cut", after_seconds=self.close_timeout)
                pool.terminate()

    async def _close_pool(self, pool: asyncpg.Pool) -> None:
        async with self._lock:
            await pool.close()

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        """Apply pending migrations under a session advisory lock: daemons starting together migrate once."""
        known = self.schema_version
        current = await _version(conn)
        if current > known:
            raise SchemaTooNew(current, known)
        if current == known:
            return
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATE_LOCK)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                               " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = await _version(conn)  # another daemon may have migrated meanwhile
            if current > known:
                raise SchemaTooNew(current, known)
            for version, script in _migrations():
                if version > current:
                    async with conn.transaction():
                        await conn.execute(script)
                        await conn.execute("INSERT INTO schema_version (version, applied_at)"
                                           " VALUES ($1, to_char(now() AT TIME ZONE 'UTC',"
                                           " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'))", version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATE_LOCK)

    @asynccontextmanager
    async def transaction(self, *, backlog: bool = False) -> AsyncIterator[Store]:
        pool = self._require()
        async with self._lock, pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            yield Store(PostgresConnection(conn))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Store]:
        pool = self._require()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield Store(PostgresConnection(conn))

    @asynccontextmanager
    async def claims(self) -> AsyncIterator[Store]:
        pool = self._require()
        async with pool.acquire() as conn, conn.transaction():
            yield Store(PostgresConnection(conn))

    def raw_chunks(self, inbox_id: int, chunk: int = 1 << 16) -> Iterator[bytes]:
        """A stored mail's bytes in pieces, read through the event loop from the worker thread that iterates it.
        (The shared inbox hands every claimed mail out with its bytes; this is the interface's fallback.)"""
        loop = self._loop
        assert loop is not None, "the database is not open"
        raw = asyncio.run_coroutine_threadsafe(self._raw(inbox_id), loop).result()
        for start in range(0, len(raw), chunk):
            yield raw[start:start + chunk]

    async def _raw(self, inbox_id: int) -> bytes:
        async with self._require().acquire() as conn:
            value = await conn.fetchval("SELECT raw FROM inbox_raw WHERE inbox_id = $1", inbox_id)
        return bytes(value) if value is not None else b""

    async def backup(self, target: Path) -> None:
        raise NotImplementedError("a PostgreSQL database is backed up with pg_dump")

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database is not open")
        return self._pool


async def _version(conn: asyncpg.Connection) -> int:
    exists: Any = await conn.fetchval("SELECT to_regclass('schema_version')")
    if exists is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
