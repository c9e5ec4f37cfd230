"""The repositories' view of a connection: at most one trip to the database thread a statement, often none.

aiosqlite answers ``async with conn.execute(sql) as cursor: await
cursor.fetchone()`` with three trips to its thread (the statement, the fetch,
the close), each about 60–75 µs plus a wake-up of the event loop and a
handover of the interpreter lock, which costs more than the statement.  Here
a query's rows are fetched in the same trip as the statement, and closing
costs nothing.

Inside a write transaction it goes further: the transaction already holds
SQLite's write lock (``BEGIN IMMEDIATE`` waited for it in the thread), so a
statement can no longer wait for anyone, and the short indexed statements a
transaction is made of run at once, in the caller's thread.  What could take
long still goes to the thread: a statement carrying more than
``INLINE_BYTES`` of data (a mail, an attachment), and the ``COMMIT`` of such
a transaction (``SqliteDatabase`` decides where a ``COMMIT`` runs).  The
repositories use it exactly as they used aiosqlite's.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Protocol, TypeVar, cast

import aiosqlite

from mailticketd.storage.dialect import SQLITE, Dialect

T = TypeVar("T")

# Statements whose rows are read: fetched with the statement.
_QUERIES = ("select", "with", "pragma", "values")
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)
# Statements carrying more data than this go to the database thread even inside a transaction.
INLINE_BYTES = 16 * 1024
# A transaction whose statements carried more than this in all (many small attachments) commits in that thread.
HEAVY_BYTES = 4 * INLINE_BYTES


@functools.lru_cache(maxsize=1024)  # the statements are the repositories' few texts: looked at once each
def _is_query(sql: str) -> bool:
    """True for a statement that gives rows (read with the statement)."""
    return sql.lstrip()[:7].lower().startswith(_QUERIES) or bool(_RETURNING.search(sql))


def _size(parameters: Iterable[Any]) -> int | None:
    """The bytes a statement carries, or None past ``INLINE_BYTES`` (some 30 times a mail: the common kinds of
    value are told apart by their exact type first)."""
    if isinstance(parameters, dict):
        parameters = parameters.values()
    total = 0
    for value in parameters:
        kind = type(value)
        if kind is int or value is None:
            continue
        if kind is str or kind is bytes or isinstance(value, (bytes, bytearray, memoryview, str)):
            total += len(value)
            if total > INLINE_BYTES:
                return None
        elif isinstance(value, (list, tuple)):
            return None  # executemany's rows: counted by the caller
    return total


def first_within(sizes: Iterable[tuple[int, int | None]], max_bytes: int) -> list[int]:
    """The ids of the first of ``(id, size)`` whose sizes add up to at most ``max_bytes`` (the first one always)."""
    chosen: list[int] = []
    total = 0
    for row_id, size in sizes:
        total += size or 0
        if chosen and total > max_bytes:
            break
        chosen.append(row_id)
    return chosen


class Rows:
    """What one statement gave: its rows (already fetched), the id it inserted and how many rows it changed."""

    def __init__(self, rows: Sequence[Any], lastrowid: int | None, rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.lastrowid = lastrowid
        self.rowcount = rowcount

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchall(self) -> list[Any]:
        rest = list(self._rows[self._next:])
        self._next = len(self._rows)
        return rest

    async def close(self) -> None:
        """Nothing to close: the rows were fetched with the statement."""

    async def __aenter__(self) -> Rows:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Statement:
    """Awaitable (``await conn.execute(…)``) and an async context manager (``async with conn.execute(…) as rows``)."""

    def __init__(self, connection: aiosqlite.Connection, inline: sqlite3.Connection | None, sql: str,
                 parameters: Iterable[Any], many: bool, owner: SqliteConnection | None = None) -> None:
        self._connection = connection
        self._inline = inline
        self._owner = owner
        self._sql = sql
        self._parameters = parameters
        self._many = many

    def _query(self) -> bool:
        return _is_query(self._sql)

    def _run_inline(self, inline: sqlite3.Connection) -> Rows:
        if self._many:
            cursor = inline.executemany(self._sql, self._parameters)
            return Rows((), cursor.lastrowid, cursor.rowcount)
        cursor = inline.execute(self._sql, self._parameters)  # type: ignore[arg-type]
        if self._query():
            return Rows(cursor.fetchall(), None, -1)
        return Rows((), cursor.lastrowid, cursor.rowcount)

    async def _run(self) -> Rows:
        if self._inline is not None:
            if self._many:
                self._parameters = [tuple(row) for row in self._parameters]
                sizes = [_size(row) for row in self._parameters]
                size = None if None in sizes else sum(size for size in sizes if size is not None)
            else:
                size = _size(self._parameters)
            if self._owner is not None:
                self._owner.carried(size)
            if size is not None:
                return self._run_inline(self._inline)
        connection, sql = self._connection, self._sql
        if self._many:
            cursor = await connection.executemany(sql, self._parameters)
            return Rows((), cursor.lastrowid, cursor.rowcount)
        if self._query():
            rows = await connection.execute_fetchall(sql, self._parameters)
            return Rows(list(rows), None, -1)
        cursor = await connection.execute(sql, self._parameters)
        return Rows((), cursor.lastrowid, cursor.rowcount)

    def __await__(self) -> Generator[Any, None, Rows]:
        return self._run().__await__()

    async def __aenter__(self) -> Rows:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


class Statement(Protocol):
    """What ``execute`` gives: awaited, or entered with ``async with``, it runs and yields its ``Rows``."""

    def __await__(self) -> Generator[Any, None, Rows]: ...

    async def __aenter__(self) -> Rows: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Connection(Protocol):
    """What the repositories use of a connection, whichever the backend: ``?`` placeholders (or ``:name``), rows
    indexable by position, and the backend's ``dialect`` for the SQL that differs."""

    dialect: Dialect

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> Statement: ...

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Statement: ...

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]: ...


class SqliteConnection:
    """An aiosqlite connection whose statements each make one trip to its thread, or none with ``inline``.

    ``inline`` is the same SQLite connection (opened with ``check_same_thread=False``), given only to a
    transaction that holds the write lock and the connection's lock, so nothing else uses it meanwhile.
    """

    dialect = SQLITE

    def __init__(self, connection: aiosqlite.Connection, inline: sqlite3.Connection | None = None) -> None:
        self._connection = connection
        self._inline = inline
        # This transaction's statements carried more than HEAVY_BYTES (or one more than INLINE_BYTES, or it used
        # blob I/O): its COMMIT writes that much, so it goes to the database thread too.
        self.heavy = False
        self._carried = 0

    def carried(self, size: int | None) -> None:
        """Count a statement's bytes (None: more than one statement may carry inline)."""
        self._carried += INLINE_BYTES + 1 if size is None else size
        self.heavy = self.heavy or size is None or self._carried > HEAVY_BYTES

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _Statement:
        return _Statement(self._connection, self._inline, sql, parameters, many=False, owner=self)

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _Statement:
        return _Statement(self._connection, self._inline, sql, parameters, many=True, owner=self)

    async def in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the SQLite connection in the database thread, inside whatever transaction is open: for
        what takes long and cannot be one statement (incremental blob I/O)."""
        self.heavy = True
        sqlite = self._connection._conn
        return cast(T, await self._connection._execute(work, sqlite))  # type: ignore[no-untyped-call]

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        """All rows of a query (aiosqlite's name for it)."""
        return await (await self.execute(sql, parameters)).fetchall()
