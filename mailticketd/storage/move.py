"""Moving a desk from SQLite to PostgreSQL: every table copied in dependency order, in batches, ids kept, the
sequences set past the copied values; then per table a row count and a checksum on both sides.

The checksum is sha256 over the rows in primary-key order (text keys in byte order: SQLite's BINARY, PostgreSQL's
``COLLATE "C"``), each value normalised to the PostgreSQL column's kind (integer, text, bytes) and written with its
kind and length, so both sides hash the same bytes exactly when they hold the same values.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import struct
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

# The tables in an order in which every reference points to a table copied before; the two references that
# cannot (an organisation's primary contact is a user; a ticket may follow a later-copied ticket) are filled
# in after all rows are in.
TABLES = ("organisations", "users", "operators", "vms", "tickets", "participants", "inbox", "inbox_raw",
          "articles", "attachment_blobs", "article_attachments", "message_ids", "ticket_vms", "outbox", "verification_tokens",
          "audit_log", "web_sessions", "login_failures", "daemons")
_DEFERRED = {"organisations": "primary_contact_id", "tickets": "follows_ticket_id"}
# Tables whose order of insertion is a column of its own on PostgreSQL (SQLite's implicit rowid).
_ROWID = {"message_ids": "rowid"}
BATCH_ROWS = 500
BATCH_BYTES = 16 << 20

Progress = Callable[[str, int, int], None]  # table, rows done in it, rows in it


class NotEmpty(Exception):
    """The target database holds data already."""


@dataclass(frozen=True)
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256

    def view(self) -> dict[str, Any]:
        return {"table": self.table, "source_rows": self.source_rows, "target_rows": self.target_rows,
                "source_sha256": self.source_sha256, "target_sha256": self.target_sha256, "ok": self.ok}


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[str, ...]  # SQLite's columns, the same on PostgreSQL
    kinds: tuple[str, ...]  # per column: int, text or bytes (PostgreSQL's type)
    key: tuple[str, ...]  # primary key columns
    text_key: frozenset[str]  # key columns holding text


def _kind(data_type: str) -> str:
    if data_type in ("bigint", "integer", "smallint"):
        return "int"
    if data_type == "bytea":
        return "bytes"
    return "text"


def _normal(kind: str, value: Any) -> Any:
    """``value`` as the PostgreSQL column's kind holds it."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "bytes":
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _feed(digest: Any, row: tuple[Any, ...]) -> None:
    for value in row:
        if value is None:
            digest.update(b"N")
            continue
        if isinstance(value, int):
            tag, data = b"I", str(value).encode("ascii")
        elif isinstance(value, bytes):
            tag, data = b"B", value
        else:
            tag, data = b"S", value.encode("utf-8", "surrogateescape")
        digest.update(tag + struct.pack(">Q", len(data)) + data)


async def describe(pg: asyncpg.Connection, source: sqlite3.Connection) -> list[_Table]:
    """The tables to copy, with their columns and keys (from SQLite) and column kinds (from PostgreSQL)."""
    tables = []
    for name in TABLES:
        info = source.execute(f"PRAGMA table_info({name})").fetchall()
        columns = tuple(str(row[1]) for row in info)
        key = tuple(str(row[1]) for row in sorted((row for row in info if row[5]), key=lambda row: row[5]))
        types = {str(row["column_name"]): str(row["data_type"]) for row in await pg.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1", name)}
        missing = [column for column in columns if column not in types]
        if missing:
            raise RuntimeError(f"the PostgreSQL table {name} lacks the columns {', '.join(missing)}")
        kinds = tuple(_kind(types[column]) for column in columns)
        text_key = frozenset(column for column in key if types[column] != "bigint")
        tables.append(_Table(name, columns, kinds, key, text_key))
    return tables


async def check_empty(pg: asyncpg.Connection) -> None:
    """Refuse a database holding any table other than an empty mailticketd schema, naming what it holds."""
    names = [str(row[0]) for row in await pg.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_type = 'BASE TABLE' ORDER BY table_name")]
    found = []
    for name in names:
        if name == "schema_version":
            continue
        rows = int(await pg.fetchval(f'SELECT count(*) FROM "{name}"'))
        if rows or name not in TABLES:
            found.append(f"{name} ({rows} rows)" if name in TABLES else f"{name} (not a mailticketd table, "
                                                                         f"{rows} rows)")
    if found:
        raise NotEmpty("the target database is not empty: it holds " + ", ".join(found))


def _batches(source: sqlite3.Connection, table: _Table) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, in batches of at most ``BATCH_ROWS`` rows and about ``BATCH_BYTES``."""
    extra = [f"rowid AS {_ROWID[table.name]}"] if table.name in _ROWID else []
    cursor = source.execute(f"SELECT {', '.join([*table.columns, *extra])} FROM {table.name}"
                            f" ORDER BY {', '.join(table.key)}")
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in cursor:
        batch.append(row)
        size += sum(len(value) for value in row if isinstance(value, (bytes, str)))
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


async def copy(source: sqlite3.Connection, pg: asyncpg.Connection, progress: Progress) -> None:
    """Copy every table in one transaction (a failure leaves the target as empty as it was), then set the
    sequences past the copied ids and ticket numbers."""
    tables = await describe(pg, source)
    totals = {table.name: int(source.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])
              for table in tables}
    async with pg.transaction():
        deferred: dict[str, list[tuple[int, int]]] = {}
        for table in tables:
            await _copy_table(source, pg, table, totals[table.name], deferred, progress)
        for name, pairs in deferred.items():
            await pg.executemany(f"UPDATE {name} SET {_DEFERRED[name]} = $2 WHERE id = $1", pairs)
        for table in tables:
            serial = [column for column in ("id",) if column in table.columns] + \
                     ([_ROWID[table.name]] if table.name in _ROWID else [])
            for column in serial:
                await pg.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), max({column}))"
                                 f" FROM {table.name} HAVING max({column}) IS NOT NULL")
        await pg.execute("SELECT setval('ticket_numbers', max(number)) FROM tickets HAVING max(number) IS NOT NULL")


async def _copy_table(source: sqlite3.Connection, pg: asyncpg.Connection, table: _Table, total: int,
                      deferred: dict[str, list[tuple[int, int]]], progress: Progress) -> None:
    columns = [*table.columns, *([_ROWID[table.name]] if table.name in _ROWID else [])]
    kinds = [*table.kinds, *(["int"] if table.name in _ROWID else [])]
    later = table.columns.index(_DEFERRED[table.name]) if table.name in _DEFERRED else -1
    placeholders = ", ".join(f"${index + 1}" for index in range(len(columns)))
    insert = (f"INSERT INTO {table.name} ({', '.join(columns)}) OVERRIDING SYSTEM VALUE"
              f" VALUES ({placeholders})")
    batches = _batches(source, table)
    done = 0
    progress(table.name, 0, total)
    while True:
        batch = await asyncio.to_thread(next, batches, None)
        if batch is None:
            break
        rows = []
        for raw in batch:
            row = [_normal(kind, value) for kind, value in zip(kinds, raw)]
            if later >= 0 and row[later] is not None:
                deferred.setdefault(table.name, []).append((row[table.columns.index("id")], row[later]))
                row[later] = None
            rows.append(row)
        await pg.executemany(insert, rows)
        done += len(rows)
        progress(table.name, done, total)


async def verify(source: sqlite3.Connection, pg: asyncpg.Connection,
                 progress: Callable[[str], Awaitable[None] | None] | None = None) -> list[TableCheck]:
    """Row count and checksum of every table on both sides."""
    checks = []
    for table in await describe(pg, source):
        if progress is not None:
            progress(table.name)
        source_rows, source_sum = await asyncio.to_thread(_sqlite_sum, source, table)
        target_rows, target_sum = await _postgres_sum(pg, table)
        checks.append(TableCheck(table.name, source_rows, target_rows, source_sum, target_sum))
    return checks


def _sqlite_sum(source: sqlite3.Connection, table: _Table) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    cursor = source.execute(f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {', '.join(table.key)}")
    for raw in cursor:
        _feed(digest, tuple(_normal(kind, value) for kind, value in zip(table.kinds, raw)))
        count += 1
    return count, digest.hexdigest()


async def _postgres_sum(pg: asyncpg.Connection, table: _Table) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0
    order = ", ".join(f'{column} COLLATE "C"' if column in table.text_key else column for column in table.key)
    async with pg.transaction(isolation="repeatable_read", readonly=True):
        async for raw in pg.cursor(f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {order}",
                                   prefetch=200):
            _feed(digest, tuple(_normal(kind, value) for kind, value in zip(table.kinds, raw)))
            count += 1
    return count, digest.hexdigest()


def open_source(path: Path) -> sqlite3.Connection:
    """The SQLite database, read only, usable from the copying threads one at a time."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
