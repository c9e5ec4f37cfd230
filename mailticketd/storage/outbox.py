"""SQL for the outbox: one row per recipient of every outgoing mail, and its delivery state."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.storage.connection import Connection, first_within

STATUSES = ("queued", "sent", "failed")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    created_at: str
    ticket_id: int | None
    kind: str
    mail_from: str
    rcpt_to: str
    message_id: str
    status: str  # queued | sent | failed
    attempts: int
    next_attempt_at: str
    last_error: str | None
    sent_at: str | None
    # Only ``next_due`` loads the message itself; listings leave it out.
    raw: bytes | None = field(default=None, repr=False, compare=False)


_COLUMNS = """id, created_at, ticket_id, kind, mail_from, rcpt_to, message_id,
    status, attempts, next_attempt_at, last_error, sent_at"""


def _row(values: aiosqlite.Row, raw: bytes | None = None) -> OutboxRow:
    return OutboxRow(
        id=values[0], created_at=values[1], ticket_id=values[2], kind=values[3], mail_from=values[4],
        rcpt_to=values[5], message_id=values[6], status=values[7], attempts=values[8],
        next_attempt_at=values[9], last_error=values[10], sent_at=values[11], raw=raw,
    )


def _in_due_order(rows: Iterable[aiosqlite.Row]) -> builtins.list[OutboxRow]:
    """Leased rows read back with their mail (``RETURNING`` keeps no order), in the order they fell due."""
    found = [_row(values, bytes(values[12])) for values in rows]
    return sorted(found, key=lambda row: (row.next_attempt_at, row.id))


# Rows due to be sent at ``?`` and not leased at ``?``.
_DUE = "status = 'queued' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?)"

# Once a mail has left (or never will), only its copy without secrets stays.
_FORGET_SECRETS = "raw = coalesce(raw_after_send, raw), raw_after_send = NULL"


class OutboxRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def enqueue(self, *, ticket_id: int | None, kind: str, mail_from: str, rcpt_to: str,
                      message_id: str, raw: bytes, now: datetime | None = None,
                      raw_after_send: bytes | None = None) -> int:
        """Queue ``raw`` for one recipient, due at once; returns the row id.

        ``raw_after_send`` (the mail without its secrets) replaces ``raw`` once it is sent or has failed.
        """
        moment = iso(now or utc_now())
        cursor = await self.conn.execute(
            "INSERT INTO outbox (created_at, ticket_id, kind, mail_from, rcpt_to, message_id, raw, raw_after_send,"
            " status, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?) RETURNING id",
            (moment, ticket_id, kind, mail_from, rcpt_to, message_id, raw, raw_after_send, moment),
        )
        return int((await cursor.fetchone())[0])

    async def fill(self, mails: Iterable[tuple[int, bytes, bytes | None]]) -> None:
        """Put each row's mail in (id, the mail, its copy without secrets or None), in the transaction that queued
        the rows (``Mailer.flush``)."""
        await self.conn.executemany("UPDATE outbox SET raw = ?, raw_after_send = ? WHERE id = ?",
                                    [(raw, kept, outbox_id) for outbox_id, raw, kept in mails])

    async def next_due(self, now: datetime) -> OutboxRow | None:
        """The queued, unleased row that has been due longest, with its raw bytes (with several daemons: that no
        other daemon is claiming right now)."""
        moment = iso(now)
        async with self.conn.execute(
            f"SELECT {_COLUMNS}, raw FROM outbox WHERE {_DUE} ORDER BY next_attempt_at, id LIMIT 1"
            + self.conn.dialect.skip_locked,
            (moment, moment),
        ) as cursor:
            values = await cursor.fetchone()
        return _row(values, bytes(values[12])) if values else None

    async def claim_next(self, now: datetime, lease_until: datetime) -> OutboxRow | None:
        """``next_due``, leased until ``lease_until``: nobody sends it again before then (call in a transaction)."""
        rows = await self.claim_due(now, lease_until, limit=1)
        return rows[0] if rows else None

    async def claim_due(self, now: datetime, lease_until: datetime, *, limit: int,
                        max_bytes: int | None = None) -> builtins.list[OutboxRow]:
        """Up to ``limit`` rows in the order ``next_due`` gives them, each leased until ``lease_until`` (call in a
        transaction); with ``max_bytes``, only as many as hold that much mail in all (the first whatever its size)."""
        moment = iso(now)
        if max_bytes is not None and limit > 1:
            return await self._claim_due_within(moment, lease_until, limit, max_bytes)
        # One statement: the oldest due rows, leased and read back. The rows are picked once (MATERIALIZED): a
        # planner that ran the pick again per row could lease more than ``limit``, and a relay must get one mail a
        # claim.
        async with self.conn.execute(
            f"WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE {_DUE} ORDER BY next_attempt_at, id"
            f" LIMIT ?{self.conn.dialect.skip_locked}) UPDATE outbox SET leased_until = ?"
            f" WHERE id IN (SELECT id FROM picked) RETURNING {_COLUMNS}, raw",
            (moment, moment, limit, iso(lease_until)),
        ) as cursor:
            return _in_due_order(await cursor.fetchall())

    async def _claim_due_within(self, moment: str, lease_until: datetime, limit: int,
                                max_bytes: int) -> builtins.list[OutboxRow]:
        """``claim_due`` within ``max_bytes``: the sizes read first (not the mails), then the rows that fit leased
        and read back by their ids.  Where daemons share the outbox, the rows picked are locked (another daemon's
        claim skips them) and their lease is checked again; one SQLite daemon's write transaction is alone: there
        the ids alone pick the rows."""
        async with self.conn.execute(
            f"SELECT id, length(raw) FROM outbox WHERE {_DUE} ORDER BY next_attempt_at, id LIMIT ?"
            + self.conn.dialect.skip_locked,
            (moment, moment, limit),
        ) as cursor:
            chosen = first_within(await cursor.fetchall(), max_bytes)
        if not chosen:
            return []
        marks = ", ".join("?" for _ in chosen)
        sql, parameters = f"UPDATE outbox SET leased_until = ? WHERE id IN ({marks})", [iso(lease_until), *chosen]
        if self.conn.dialect.shared:
            sql, parameters = f"{sql} AND {_DUE}", [*parameters, moment, moment]
        async with self.conn.execute(f"{sql} RETURNING {_COLUMNS}, raw", parameters) as cursor:
            return _in_due_order(await cursor.fetchall())

    async def release_leases(self) -> int:
        """End every lease: at start, when no other sender can hold one (SQLite has one daemon).  Where several
        daemons share the outbox the leases stay: another daemon may be sending; a dead one's lease just ends."""
        if self.conn.dialect.shared:
            return 0
        cursor = await self.conn.execute("UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL")
        return cursor.rowcount

    async def mark_sent(self, outbox_id: int, *, now: datetime | None = None) -> None:
        await self.mark_all_sent([(outbox_id, now or utc_now())])

    async def mark_all_sent(self, sent: Iterable[tuple[int, datetime]]) -> None:
        """Mark each row (id, when it left) as sent, in one statement."""
        await self.conn.executemany(
            "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL, attempts = attempts + 1,"
            f" leased_until = NULL, {_FORGET_SECRETS} WHERE id = ?",
            [(iso(at), outbox_id) for outbox_id, at in sent],
        )

    async def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        """Record a temporary failure: queued again, due at ``next_attempt_at``."""
        await self.conn.execute(
            "UPDATE outbox SET status = 'queued', last_error = ?, next_attempt_at = ?, attempts = attempts + 1,"
            " leased_until = NULL WHERE id = ?",
            (error, iso(next_attempt_at), outbox_id),
        )

    async def mark_failed(self, outbox_id: int, error: str) -> None:
        """Give up on the row for good, keeping the last answer."""
        await self.conn.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, attempts = attempts + 1, leased_until = NULL,"
            f" {_FORGET_SECRETS} WHERE id = ?",
            (error, outbox_id),
        )

    async def get(self, outbox_id: int) -> OutboxRow | None:
        async with self.conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (outbox_id,)) as cursor:
            values = await cursor.fetchone()
        return _row(values) if values else None

    async def raw(self, outbox_id: int) -> bytes | None:
        async with self.conn.execute("SELECT raw FROM outbox WHERE id = ?", (outbox_id,)) as cursor:
            values = await cursor.fetchone()
        return bytes(values[0]) if values else None

    async def counts(self) -> dict[str, int]:
        """How many rows are in each status (every status present, zero included)."""
        found = dict.fromkeys(STATUSES, 0)
        async with self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status") as cursor:
            for status, count in await cursor.fetchall():
                found[status] = int(count)
        return found

    async def recipients_of(self, message_id: str) -> list[str]:
        """Who the mail with this Message-ID was sent to (one row per recipient)."""
        async with self.conn.execute("SELECT rcpt_to FROM outbox WHERE message_id = ?", (message_id,)) as cursor:
            return [str(values[0]).lower() for values in await cursor.fetchall()]

    async def waiting(self) -> tuple[str | None, str | None, str | None]:
        """When the oldest waiting mail was queued, when the last mail left, since when a waiting one is due."""
        async with self.conn.execute(
            # Three index look-ups, not a pass over every mail ever sent (the health probe runs it).
            "SELECT (SELECT min(created_at) FROM outbox WHERE status = 'queued'), (SELECT max(sent_at) FROM outbox),"
            " (SELECT min(next_attempt_at) FROM outbox WHERE status = 'queued')"
        ) as cursor:
            values = await cursor.fetchone()
        return (values[0], values[1], values[2]) if values else (None, None, None)

    async def count_recent(self, rcpt_to: str, kinds: tuple[str, ...], since: datetime) -> int:
        """How many mails of ``kinds`` were queued for ``rcpt_to`` since ``since``, whatever became of them."""
        marks = ", ".join("?" for _ in kinds)
        async with self.conn.execute(
            f"SELECT count(*) FROM outbox WHERE lower(rcpt_to) = lower(?) AND kind IN ({marks}) AND created_at >= ?",
            (rcpt_to, *kinds, iso(since)),
        ) as cursor:
            values = await cursor.fetchone()
        return int(values[0]) if values else 0

    async def list(self, statuses: tuple[str, ...] = ("queued", "failed")) -> builtins.list[OutboxRow]:
        marks = ", ".join("?" for _ in statuses)
        async with self.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE status IN ({marks}) ORDER BY id", statuses,
        ) as cursor:
            return [_row(values) for values in await cursor.fetchall()]
