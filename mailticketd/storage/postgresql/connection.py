"""The repositories' view of an asyncpg connection: their ``?`` (and ``:name``) placeholders become ``$n``.

asyncpg's ``Record`` is indexable by position and by name like ``sqlite3.Row``, so the repositories read rows
the same way on both backends; a statement that is no query answers with how many rows it changed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator, Iterable, Mapping
from typing import Any

import asyncpg

from mailticketd.storage.connection import Rows
from mailticketd.storage.dialect import POSTGRESQL

_QUERIES = ("select", "with", "values")
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)
# Quoted text and identifiers are copied as they are; a placeholder is "?" or ":name" (not "::type").
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:[A-Za-z_]\w*")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``$n`` placeholders, and the names of its ``:name`` placeholders in the order of ``$n``."""
    names: list[str] = []
    count = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if token == "?":
            count += 1
            return f"${count}"
        if token.startswith(":") and token != "::":
            name = token[1:]
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"
        return token

    return _TOKENS.sub(placeholder, sql), tuple(names)


def _arguments(names: tuple[str, ...], parameters: Iterable[Any]) -> list[Any]:
    if isinstance(parameters, Mapping):
        return [parameters[name] for name in names]
    return list(parameters)


def _query(sql: str) -> bool:
    return sql.lstrip()[:7].lower().startswith(_QUERIES) or bool(_RETURNING.search(sql))


def _changed(status: str) -> int:
    """How many rows a command changed, from its status (``UPDATE 3``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


class _Statement:
    def __init__(self, connection: asyncpg.Connection, sql: str, parameters: Any, many: bool) -> None:
        self._connection = connection
        self._sql = sql
        self._parameters = parameters
        self._many = many

    async def _run(self) -> Rows:
        sql, names = translate(self._sql)
        if self._many:
            await self._connection.executemany(sql, [_arguments(names, row) for row in self._parameters])
            return Rows((), None, -1)
        arguments = _arguments(names, self._parameters)
        if _query(self._sql):
            return Rows(await self._connection.fetch(sql, *arguments), None, -1)
        return Rows((), None, _changed(await self._connection.execute(sql, *arguments)))

    def __await__(self) -> Generator[Any, None, Rows]:
        return self._run().__await__()

    async def __aenter__(self) -> Rows:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


class PostgresConnection:
    """An asyncpg connection as the repositories use a connection (``storage.connection.Connection``)."""

    dialect = POSTGRESQL

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _Statement:
        return _Statement(self._connection, sql, parameters, many=False)

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _Statement:
        return _Statement(self._connection, sql, parameters, many=True)

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        return await (await self.execute(sql, parameters)).fetchall()
