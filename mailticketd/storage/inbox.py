"""SQL for the durable inbox: raw mails as the SMTP side accepted them, and their processing state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.storage.connection import Connection


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
            "INSERT INTO inbox (received_at, peer, mail_from, rcpt_tos, message_id, size, raw, origin)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (iso(utc_now()), peer, mail_from, json.dumps(rcpt_tos), message_id, len(raw), raw,
             json.dumps(origin) if origin is not None else None),
        )
        return int((await cursor.fetchone())[0])

    async def backlog(self) -> int:
        async with self.conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def next_due(self, now: datetime) -> tuple[InboxRow, bytes] | None:
        """The oldest pending row that is due, with its raw bytes."""
        async with self.conn.execute(
            f"SELECT {_COLUMNS}, i.raw FROM inbox i LEFT JOIN tickets t ON t.id = i.ticket_id"
            " WHERE i.status = 'pending' AND (i.next_attempt_at IS NULL OR i.next_attempt_at <= ?)"
            " ORDER BY i.id LIMIT 1",
            (iso(now),),
        ) as cursor:
            values = await cursor.fetchone()
        return (_row(values), bytes(values[13])) if values else None

    async def next_due_batch(self, now: datetime, *, limit: int, max_bytes: int) -> list[tuple[InboxRow, bytes]]:
        """The oldest pending rows that are due, with their raw bytes: at most ``limit`` rows and, beyond the
        first, ``max_bytes`` of mail."""
        async with self.conn.execute(
            "WITH due AS (SELECT id, sum(size) OVER (ORDER BY id) AS running FROM inbox"
            " WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?)"
            f" SELECT {_COLUMNS}, i.raw FROM due JOIN inbox i ON i.id = due.id"
            " LEFT JOIN tickets t ON t.id = i.ticket_id"
            " WHERE due.running <= ? OR due.id = (SELECT min(id) FROM due) ORDER BY i.id",
            (iso(now), limit, max_bytes),
        ) as cursor:
            return [(_row(values), bytes(values[13])) for values in await cursor.fetchall()]

    async def claim_due_batch(self, now: datetime, *, owner: str, lease_until: datetime, limit: int,
                              max_bytes: int) -> list[tuple[InboxRow, bytes]]:
        """``next_due_batch``, claimed for ``owner`` until ``lease_until`` where several daemons share the inbox:
        rows another daemon claimed (and whose lease has not ended) or is claiming right now are skipped (call in
        ``Database.claims()``).  With one daemon nothing needs claiming: the rows are only read."""
        if not self.conn.dialect.shared:
            return await self.next_due_batch(now, limit=limit, max_bytes=max_bytes)
        moment = iso(now)
        async with self.conn.execute(
            "SELECT id, size FROM inbox WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?" + self.conn.dialect.skip_locked,
            (moment, moment, limit),
        ) as cursor:
            candidates = await cursor.fetchall()
        chosen: list[int] = []
        total = 0
        for inbox_id, size in candidates:
            total += size
            if chosen and total > max_bytes:
                break
            chosen.append(inbox_id)
        if not chosen:
            return []
        marks = ", ".join("?" for _ in chosen)
        await self.conn.execute(f"UPDATE inbox SET claimed_by = ?, lease_until = ? WHERE id IN ({marks})",
                                (owner, iso(lease_until), *chosen))
        async with self.conn.execute(
            f"SELECT {_COLUMNS}, i.raw FROM inbox i LEFT JOIN tickets t ON t.id = i.ticket_id"
            f" WHERE i.id IN ({marks}) ORDER BY i.id", chosen,
        ) as cursor:
            return [(_row(values), bytes(values[13])) for values in await cursor.fetchall()]

    async def still_claimed(self, inbox_id: int, owner: str) -> bool:
        """True if the row is pending and claimed by ``owner`` (call in the transaction that processes it: another
        daemon may have taken it over after the lease ended, and done it).  Always true with one daemon."""
        if not self.conn.dialect.shared:
            return True
        async with self.conn.execute(
            "SELECT 1 FROM inbox WHERE id = ? AND status = 'pending' AND claimed_by = ?", (inbox_id, owner)
        ) as cursor:
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

    async def mark_attempt_failed(self, inbox_id: int, *, reason: str, retry_at: datetime | None) -> None:
        """Record a failed attempt: pending again at ``retry_at``, or failed for good without one."""
        await self.conn.execute(
            "UPDATE inbox SET status = ?, reason = ?, next_attempt_at = ?, attempts = attempts + 1,"
            " processed_at = ?, claimed_by = NULL, lease_until = NULL WHERE id = ?",
            ("pending" if retry_at else "failed", reason, iso(retry_at) if retry_at else None,
             iso(utc_now()), inbox_id),
        )

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
