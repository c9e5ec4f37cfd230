"""SQL for the durable inbox: raw mails as the SMTP side accepted them, and their processing state.

The mail's bytes sit in ``inbox_raw``, apart from the row's state (an UPDATE rewrites a whole record).  A
mail up to ``WHOLE_BYTES`` is read with its row; a bigger one is left out of the batch and read in chunks
(``raw_chunks``), so that neither SQLite's sorter nor a Python ``bytes`` ever holds all of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.storage.connection import INLINE_BYTES, Connection, SqliteConnection, first_within


# Mails up to this size come with their row; bigger ones are read in chunks of RAW_CHUNK (see raw_chunks).
WHOLE_BYTES = 1 << 20
RAW_CHUNK = 1 << 16


@dataclass(frozen=True)
class InboxRow:
    id: int
    received_at: str
    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str | None
    size: int
    status: str  # pending | done | failed
    attempts: int
    reason: str | None
    decision: str | None
    ticket_number: int | None
    origin: dict[str, Any] | None = None  # set by the web helpdesk only: who wrote, which ticket, which VMs


_COLUMNS = """i.id, i.received_at, i.peer, i.mail_from, i.rcpt_tos, i.message_id, i.size,
    i.status, i.attempts, i.reason, i.decision, t.number, i.origin"""


def _row(values: aiosqlite.Row) -> InboxRow:
    return InboxRow(
        id=values[0], received_at=values[1], peer=values[2], mail_from=values[3],
        rcpt_tos=tuple(json.loads(values[4])), message_id=values[5], size=values[6], status=values[7],
        attempts=values[8], reason=values[9], decision=values[10], ticket_number=values[11],
        origin=json.loads(values[12]) if values[12] else None,
    )


class InboxRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def add(self, *, peer: str, mail_from: str, rcpt_tos: list[str], message_id: str | None, raw: bytes,
                  origin: dict[str, Any] | None = None) -> int:
        cursor = await self.conn.execute(
            "INSERT INTO inbox (received_at, peer, mail_from, rcpt_tos, message_id, size, origin)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (iso(utc_now()), peer, mail_from, json.dumps(rcpt_tos), message_id, len(raw),
             json.dumps(origin) if origin is not None else None),
        )
        inbox_id = int((await cursor.fetchone())[0])
        if len(raw) <= INLINE_BYTES or not self.conn.dialect.incremental_blobs:
            await self.conn.execute("INSERT INTO inbox_raw (inbox_id, raw) VALUES (?, ?)", (inbox_id, raw))
        else:  # the web form's files: streamed in, not bound (SQLite would copy them twice)
            assert isinstance(self.conn, SqliteConnection)
            await self.conn.in_thread(lambda conn: write_raw(conn, inbox_id, [raw], len(raw)))
        return inbox_id

    async def backlog(self) -> int:
        async with self.conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def next_due(self, now: datetime) -> tuple[InboxRow, bytes | None] | None:
        """The oldest pending row that is due, with its raw bytes (None past ``WHOLE_BYTES``: see ``raw_chunks``)."""
        found = await self.next_due_batch(now, limit=1, max_bytes=0)
        return found[0] if found else None

    async def next_due_batch(self, now: datetime, *, limit: int, max_bytes: int,
                             after: int = 0) -> list[tuple[InboxRow, bytes | None]]:
        """The oldest pending rows that are due (past the id ``after``, and any that failed before and are due again),
        with their raw bytes: at most ``limit`` rows and, beyond the first, ``max_bytes`` of mail.  A mail past ``WHOLE_BYTES`` comes without its bytes (None):
        read it with ``raw_chunks``."""
        async with self.conn.execute(
            "WITH due AS (SELECT id, sum(size) OVER (ORDER BY id) AS running FROM inbox WHERE status = 'pending'"
            " AND (id > ? OR next_attempt_at IS NOT NULL) AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " ORDER BY id LIMIT ?)"
            f" SELECT {_COLUMNS}, (SELECT r.raw FROM inbox_raw r WHERE r.inbox_id = i.id AND i.size <= ?)"
            " FROM due JOIN inbox i ON i.id = due.id LEFT JOIN tickets t ON t.id = i.ticket_id"
            " WHERE due.running <= ? OR due.id = (SELECT min(id) FROM due) ORDER BY i.id",
            (after, iso(now), limit, WHOLE_BYTES, max_bytes),
        ) as cursor:
            return [(_row(values), None if values[13] is None else bytes(values[13]))
                    for values in await cursor.fetchall()]

    async def claim_due_batch(self, now: datetime, *, owner: str, lease_until: datetime, limit: int,
                              max_bytes: int, after: int = 0) -> list[tuple[InboxRow, bytes | None]]:
        """``next_due_batch``, claimed for ``owner`` until ``lease_until`` where several daemons share the inbox:
        rows another daemon claimed (and whose lease has not ended) or is claiming right now are skipped (call in
        ``Database.claims()``).  With one daemon nothing needs claiming: the rows are only read."""
        if not self.conn.dialect.shared:
            return await self.next_due_batch(now, limit=limit, max_bytes=max_bytes, after=after)
        moment = iso(now)
        async with self.conn.execute(
            "SELECT id, size FROM inbox WHERE status = 'pending' AND (id > ? OR next_attempt_at IS NOT NULL)"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND (lease_until IS NULL OR lease_until <= ?)"
            " ORDER BY id LIMIT ?"
            + self.conn.dialect.skip_locked,
            (after, moment, moment, limit),
        ) as cursor:
            chosen = first_within(await cursor.fetchall(), max_bytes)
        if not chosen:
            return []
        marks = ", ".join("?" for _ in chosen)
        await self.conn.execute(f"UPDATE inbox SET claimed_by = ?, lease_until = ? WHERE id IN ({marks})",
                                (owner, iso(lease_until), *chosen))
        async with self.conn.execute(
            f"SELECT {_COLUMNS}, r.raw FROM inbox i LEFT JOIN tickets t ON t.id = i.ticket_id"
            f" JOIN inbox_raw r ON r.inbox_id = i.id WHERE i.id IN ({marks}) ORDER BY i.id", chosen,
        ) as cursor:
            return [(_row(values), bytes(values[13])) for values in await cursor.fetchall()]

    async def still_claimed(self, inbox_id: int, owner: str) -> bool:
        """True if the row is pending and, where daemons share the database, claimed by ``owner`` (call in the
        transaction that processes it: another daemon may have taken it over after the lease ended, and done it;
        and a mail is never processed a second time once done, whatever the worker believes)."""
        parameters: list[object] = [inbox_id]
        sql = "SELECT 1 FROM inbox WHERE id = ? AND status = 'pending'"
        if self.conn.dialect.shared:
            sql, parameters = sql + " AND claimed_by = ?", [inbox_id, owner]
        async with self.conn.execute(sql, parameters) as cursor:
            return await cursor.fetchone() is not None

    async def stats(self) -> tuple[int, int, str | None]:
        """Pending rows, failed rows, and when the oldest pending row was received."""
        async with self.conn.execute(
            "SELECT sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),"
            " min(CASE WHEN status = 'pending' THEN received_at END) FROM inbox WHERE status IN ('pending', 'failed')"
        ) as cursor:
            row = await cursor.fetchone()
        return (int(row[0] or 0), int(row[1] or 0), row[2]) if row else (0, 0, None)

    async def mark_done(self, inbox_id: int, *, decision: str, ticket_id: int | None) -> None:
        await self.conn.execute(
            "UPDATE inbox SET status = 'done', decision = ?, ticket_id = ?, reason = NULL,"
            " processed_at = ?, attempts = attempts + 1 WHERE id = ?",
            (decision, ticket_id, iso(utc_now()), inbox_id),
        )

    async def mark_attempt_failed(self, inbox_id: int, *, reason: str, retry_at: datetime | None) -> bool:
        """Record a failed attempt: pending again at ``retry_at``, or failed for good without one.  False when the
        row is not pending (another daemon took it over and is done with it)."""
        cursor = await self.conn.execute(
            "UPDATE inbox SET status = ?, reason = ?, next_attempt_at = ?, attempts = attempts + 1,"
            " processed_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ? AND status = 'pending'",
            ("pending" if retry_at else "failed", reason, iso(retry_at) if retry_at else None,
             iso(utc_now()), inbox_id),
        )
        return cursor.rowcount == 1

    async def retry(self, inbox_id: int) -> InboxRow | None:
        """Put a failed row back in line; returns the row as it was, or None if there is none."""
        row = await self.get(inbox_id)
        if row is not None and row.status == "failed":
            await self.conn.execute(
                "UPDATE inbox SET status = 'pending', next_attempt_at = NULL, attempts = 0, claimed_by = NULL,"
                " lease_until = NULL WHERE id = ?",
                (inbox_id,),
            )
        return row

    async def get(self, inbox_id: int) -> InboxRow | None:
        async with self.conn.execute(
            f"SELECT {_COLUMNS} FROM inbox i LEFT JOIN tickets t ON t.id = i.ticket_id WHERE i.id = ?",
            (inbox_id,),
        ) as cursor:
            values = await cursor.fetchone()
        return _row(values) if values else None

    async def list(self, statuses: tuple[str, ...] = ("pending", "failed")) -> list[InboxRow]:
        marks = ", ".join("?" for _ in statuses)
        async with self.conn.execute(
            f"SELECT {_COLUMNS} FROM inbox i LEFT JOIN tickets t ON t.id = i.ticket_id"
            f" WHERE i.status IN ({marks}) ORDER BY i.id",
            statuses,
        ) as cursor:
            return [_row(values) for values in await cursor.fetchall()]


def raw_chunks(path: Path, inbox_id: int, chunk: int = RAW_CHUNK) -> Iterator[bytes]:
    """The stored bytes of inbox row ``inbox_id`` in pieces of ``chunk``, through a read-only connection of their
    own (WAL: it waits for no writer).  Blocking: iterate it in a worker thread."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.execute("BEGIN")  # one snapshot for all the pieces
        with conn.blobopen("inbox_raw", "raw", inbox_id, readonly=True) as blob:
            while piece := blob.read(chunk):
                yield piece


def write_raw(conn: sqlite3.Connection, inbox_id: int, chunks: Iterable[bytes], size: int) -> None:
    """Store a mail's ``size`` bytes for inbox row ``inbox_id``, streamed from ``chunks`` into a zeroblob (SQLite
    copies no value, as it does twice for a bound one).  Blocking: call it in the database thread."""
    conn.execute("INSERT INTO inbox_raw (inbox_id, raw) VALUES (?, zeroblob(?))", (inbox_id, size))
    written = 0
    with conn.blobopen("inbox_raw", "raw", inbox_id) as blob:
        for chunk in chunks:
            if written + len(chunk) > size:
                raise ValueError(f"more than the {size} bytes received")
            blob.write(chunk)
            written += len(chunk)
    if written != size:
        raise ValueError(f"{written} of the {size} bytes received")
