"""The repositories' view of a connection: every statement one trip to the database thread.

aiosqlite answers ``async with conn.execute(sql) as cursor: await
cursor.fetchone()`` with three trips to its thread (the statement, the fetch,
the close), each about 60–75 µs plus a wake-up of the event loop.  Here a
query's rows are fetched in the same trip as the statement, and closing costs
nothing, so a pipeline transaction of thirty statements makes thirty trips,
not ninety.  The repositories use it exactly as they used aiosqlite's.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import aiosqlite

# Statements whose rows are read: fetched with the statement.
_QUERIES = ("select", "with", "pragma", "values")
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)


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

    def __init__(self, connection: aiosqlite.Connection, sql: str, parameters: Iterable[Any], many: bool) -> None:
        self._connection = connection
        self._sql = sql
        self._parameters = parameters
        self._many = many

    async def _run(self) -> Rows:
        connection, sql = self._connection, self._sql
        if self._many:
            cursor = await connection.executemany(sql, self._parameters)
            return Rows((), cursor.lastrowid, cursor.rowcount)
        if sql.lstrip()[:7].lower().startswith(_QUERIES) or _RETURNING.search(sql):
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


class Connection:
    """An aiosqlite connection whose statements each make one trip to its thread."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _Statement:
        return _Statement(self._connection, sql, parameters, many=False)

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _Statement:
        return _Statement(self._connection, sql, parameters, many=True)
