"""SQL for the web helpdesk: sessions, failed log-ins, and what a logged-in customer may see.

Visibility is decided here in one place, as SQL: a person sees the tickets
they take part in (requester or CC); a manager also every ticket of their
organisation.  The ticket page shows only articles customers may read
(customer mails and operator replies), never notes, bounces or
auto-replies.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import aiosqlite

from mailticketd.clock import iso
from mailticketd.directory.models import User
from mailticketd.storage.directory import _USER_COLUMNS, _USER_FROM, _user
from mailticketd.storage.connection import Connection

# Article kinds a customer reads on the ticket page.
CUSTOMER_KINDS = ("mail", "reply")
# Article kinds whose files a customer may download: customers' own mails (operators' attachments never went out).
FILE_KINDS = ("mail",)
# What the list's status filter means in ticket statuses.
STATUS_FILTERS = {"open": ("new", "open"), "waiting": ("pending",), "closed": ("closed",)}


@dataclass(frozen=True)
class WebSession:
    user: User
    csrf: str
    created_at: datetime
    seen_at: datetime
    password_hash: str | None


@dataclass(frozen=True)
class ListedTicket:
    number: int
    subject: str
    status: str
    updated_at: str
    vms: tuple[str, ...]


@dataclass(frozen=True)
class CustomerArticle:
    id: int
    kind: str  # mail | reply
    author_name: str
    author_address: str
    author_organisation: str | None
    text: str
    visible_text: str
    created_at: str


@dataclass(frozen=True)
class CustomerAttachment:
    id: int
    article_id: int
    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Participant:
    name: str
    address: str
    role: str  # requester | cc


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


def _visible(user: User) -> tuple[str, list[object]]:
    """A WHERE clause over ``tickets t`` for the tickets ``user`` may see, and its parameters."""
    taking_part = "t.id IN (SELECT ticket_id FROM participants WHERE user_id = ?)"
    if user.is_manager:
        return f"(t.organisation_id = ? OR {taking_part})", [user.organisation_id, user.id]
    return taking_part, [user.id]


class HelpdeskRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- sessions ------------------------------------------------------------------------------------------------

    async def add_session(self, sha256: str, user_id: int, csrf: str, now: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO web_sessions (sha256, user_id, csrf, created_at, seen_at) VALUES (?, ?, ?, ?, ?)",
            (sha256, user_id, csrf, iso(now), iso(now)),
        )

    async def session(self, sha256: str) -> WebSession | None:
        async with self.conn.execute(
            f"SELECT s.csrf, s.created_at, s.seen_at, u.password_hash, {_USER_COLUMNS}"
            " FROM web_sessions s JOIN users u ON u.id = s.user_id LEFT JOIN organisations o ON o.id = u.organisation_id"
            " WHERE s.sha256 = ?",
            (sha256,),
        ) as cursor:
            values = await cursor.fetchone()
        if values is None:
            return None
        return WebSession(user=_user(cast(aiosqlite.Row, values[4:])), csrf=values[0], created_at=datetime.fromisoformat(values[1]),
                          seen_at=datetime.fromisoformat(values[2]), password_hash=values[3])

    async def touch_session(self, sha256: str, now: datetime) -> None:
        await self.conn.execute("UPDATE web_sessions SET seen_at = ? WHERE sha256 = ?", (iso(now), sha256))

    async def end_session(self, sha256: str) -> None:
        await self.conn.execute("DELETE FROM web_sessions WHERE sha256 = ?", (sha256,))

    async def end_sessions_of(self, user_id: int) -> int:
        """End every session of a person (logged out everywhere); returns how many there were."""
        cursor = await self.conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
        return cursor.rowcount

    async def end_sessions_before(self, created_before: datetime, seen_before: datetime) -> None:
        """Forget sessions past their absolute or idle expiry."""
        await self.conn.execute("DELETE FROM web_sessions WHERE created_at < ? OR seen_at < ?",
                                (iso(created_before), iso(seen_before)))

    # -- failed log-ins ------------------------------------------------------------------------------------------

    async def add_failure(self, keys: builtins.list[str], now: datetime) -> builtins.list[int]:
        """Count one failed (or not yet checked) log-in under each key; returns the rows' ids."""
        ids = []
        for key in keys:
            cursor = await self.conn.execute("INSERT INTO login_failures (key, at) VALUES (?, ?) RETURNING id",
                                             (key, iso(now)))
            ids.append(int((await cursor.fetchone())[0]))
        return ids

    async def forgive_failures(self, ids: builtins.list[int]) -> None:
        """Take back the failures counted for an attempt that succeeded."""
        await self.conn.executemany("DELETE FROM login_failures WHERE id = ?", [(row,) for row in ids])

    async def failures_since(self, key: str, since: datetime) -> int:
        async with self.conn.execute(
            "SELECT count(*) FROM login_failures WHERE key = ? AND at >= ?", (key, iso(since))
        ) as cursor:
            values = await cursor.fetchone()
        return int(values[0]) if values else 0

    async def clear_failures(self, key: str) -> None:
        await self.conn.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    async def forget_failures_before(self, before: datetime) -> None:
        await self.conn.execute("DELETE FROM login_failures WHERE at < ?", (iso(before),))

    # -- tickets as a customer sees them -------------------------------------------------------------------------

    async def tickets(self, user: User, *, status: str | None, words: builtins.list[str], number: int | None,
                      limit: int, offset: int) -> builtins.list[ListedTicket]:
        """The tickets ``user`` may see, newest activity first, filtered by status, words of the subject, or tag.

        Each part of the query walks an index in the order of the result and the whole stops after ``limit``
        rows, so the first page costs the same for ten tickets as for ten thousand (bench/web_list.py).
        """
        conditions, params = "", builtins.list[object]()
        if status in STATUS_FILTERS:
            wanted = STATUS_FILTERS[status]
            conditions += f" AND t.status IN ({_marks(len(wanted))})"
            params += list(wanted)
        if number is not None:
            conditions += " AND t.number = ?"
            params.append(number)
        for word in words:
            conditions += f" AND t.subject {self.conn.dialect.like} ? ESCAPE '\\'"
            params.append("%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        columns = "t.id, t.number, t.subject, t.status, t.updated_at"
        taking_part = (f"SELECT {columns} FROM participants p JOIN tickets t ON t.id = p.ticket_id"
                       f" WHERE p.user_id = ?{conditions}")
        if user.is_manager:
            # The organisation's tickets in index order, and the few elsewhere that the manager takes part in.
            sql = (f"SELECT {columns} FROM tickets t WHERE t.organisation_id = ?{conditions}"
                   f" UNION ALL {taking_part} AND t.organisation_id {self.conn.dialect.is_distinct} ? ORDER BY 5 DESC, 1 DESC LIMIT ? OFFSET ?")
            arguments = [user.organisation_id, *params, user.id, *params, user.organisation_id, limit, offset]
        else:
            sql = f"{taking_part} ORDER BY t.updated_at DESC, t.id DESC LIMIT ? OFFSET ?"
            arguments = [user.id, *params, limit, offset]
        async with self.conn.execute(sql, arguments) as cursor:
            rows = await cursor.fetchall()
        vms = await self._vms([row[0] for row in rows])
        return [ListedTicket(row[1], row[2], row[3], row[4], vms.get(row[0], ())) for row in rows]

    async def may_see(self, user: User, ticket_id: int) -> bool:
        where, params = _visible(user)
        async with self.conn.execute(f"SELECT 1 FROM tickets t WHERE t.id = ? AND {where}",
                                     [ticket_id, *params]) as cursor:
            return await cursor.fetchone() is not None

    async def _vms(self, ticket_ids: builtins.list[int]) -> dict[int, tuple[str, ...]]:
        """VMs of the tickets that belong to the ticket's own organisation (others' VMs are never shown)."""
        if not ticket_ids:
            return {}
        async with self.conn.execute(
            "SELECT tv.ticket_id, tv.name FROM ticket_vms tv JOIN tickets t ON t.id = tv.ticket_id"
            " JOIN vms v ON v.id = tv.vm_id AND v.organisation_id = t.organisation_id"
            f" WHERE tv.ticket_id IN ({_marks(len(ticket_ids))}) ORDER BY tv.name",
            ticket_ids,
        ) as cursor:
            found: dict[int, builtins.list[str]] = {}
            for ticket_id, name in await cursor.fetchall():
                found.setdefault(ticket_id, []).append(name)
        return {ticket_id: tuple(names) for ticket_id, names in found.items()}

    async def ticket_vms(self, ticket_id: int) -> tuple[str, ...]:
        return (await self._vms([ticket_id])).get(ticket_id, ())

    async def articles(self, ticket_id: int) -> builtins.list[CustomerArticle]:
        """The articles customers may read, oldest first."""
        async with self.conn.execute(
            "SELECT a.id, a.kind, coalesce(u.name, ''), a.author_address, o.name, a.text, a.visible_text,"
            " a.created_at FROM articles a LEFT JOIN users u ON u.id = a.author_id"
            " LEFT JOIN organisations o ON o.id = u.organisation_id"
            f" WHERE a.ticket_id = ? AND a.kind IN ({_marks(len(CUSTOMER_KINDS))}) ORDER BY a.id",
            (ticket_id, *CUSTOMER_KINDS),
        ) as cursor:
            return [CustomerArticle(*values) for values in await cursor.fetchall()]

    async def attachments(self, ticket_id: int) -> builtins.list[CustomerAttachment]:
        async with self.conn.execute(
            "SELECT f.id, f.article_id, f.name, f.content_type, f.size FROM article_attachments f"
            " JOIN articles a ON a.id = f.article_id"
            f" WHERE a.ticket_id = ? AND a.kind IN ({_marks(len(FILE_KINDS))}) ORDER BY f.id",
            (ticket_id, *FILE_KINDS),
        ) as cursor:
            return [CustomerAttachment(*values) for values in await cursor.fetchall()]

    async def attachment(self, ticket_id: int, attachment_id: int) -> tuple[CustomerAttachment, bytes] | None:
        """One attachment of a customer-readable article of the ticket, with its content."""
        async with self.conn.execute(
            "SELECT f.id, f.article_id, f.name, f.content_type, f.size, b.content FROM article_attachments f"
            " JOIN articles a ON a.id = f.article_id JOIN attachment_blobs b ON b.sha256 = f.sha256"
            f" WHERE f.id = ? AND a.ticket_id = ? AND a.kind IN ({_marks(len(FILE_KINDS))})",
            (attachment_id, ticket_id, *FILE_KINDS),
        ) as cursor:
            values = await cursor.fetchone()
        return (CustomerAttachment(*values[:5]), bytes(values[5])) if values else None

    async def participants(self, ticket_id: int) -> builtins.list[Participant]:
        """The ticket's participants who have not left, requester first."""
        async with self.conn.execute(
            "SELECT u.name, u.address, p.role FROM participants p JOIN users u ON u.id = p.user_id"
            " WHERE p.ticket_id = ? AND u.status != 'inactive' ORDER BY p.role = 'cc', p.added_at, u.address",
            (ticket_id,),
        ) as cursor:
            return [Participant(*values) for values in await cursor.fetchall()]

    async def colleagues(self, organisation_id: int) -> builtins.list[User]:
        """The organisation's people who have not left, by name and address."""
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.organisation_id = ? AND u.status != 'inactive'"
            " ORDER BY u.name = '', u.name, u.address",
            (organisation_id,),
        ) as cursor:
            return [_user(values) for values in await cursor.fetchall()]
