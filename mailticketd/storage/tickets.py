"""SQL for tickets, participants, linked VMs, articles, attachments and threading ids."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from mailticketd.clock import iso, utc_now
from mailticketd.tickets.models import Ticket
from mailticketd.storage.connection import INLINE_BYTES, Connection, SqliteConnection

_TICKET_COLUMNS = ("id, number, subject, status, organisation_id, requester_id, created_at, updated_at, closed_at,"
                   " assignee, follows_ticket_id, thread_index")


@dataclass(frozen=True)
class TicketSummary:
    number: int
    subject: str
    status: str
    organisation: str | None
    requester: str | None
    created_at: str
    updated_at: str
    closed_at: str | None
    assignee: str | None
    follows: int | None  # the number of the closed ticket this one continues


_SUMMARY = ("SELECT t.number, t.subject, t.status, o.name, u.address, t.created_at, t.updated_at, t.closed_at,"
            " t.assignee, f.number FROM tickets t LEFT JOIN organisations o ON o.id = t.organisation_id"
            " LEFT JOIN users u ON u.id = t.requester_id LEFT JOIN tickets f ON f.id = t.follows_ticket_id")


@dataclass(frozen=True)
class ParticipantView:
    address: str
    status: str
    role: str
    organisation: str | None


@dataclass(frozen=True)
class TicketVm:
    name: str
    organisation: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class AttachmentView:
    name: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ArticleView:
    id: int
    author: str
    author_status: str
    kind: str
    subject: str
    message_id: str | None
    text: str
    visible_text: str
    flags: tuple[str, ...]
    created_at: str
    attachments: tuple[AttachmentView, ...]


@dataclass(frozen=True)
class NewAttachment:
    name: str
    content_type: str
    content: bytes
    sha256: str


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


# The columns of an article as ``ArticleRepository.add`` writes them, in the order of its values.
_ARTICLE_COLUMNS = ("ticket_id", "inbox_id", "author_id", "author_address", "author_status", "kind", "message_id",
                    "subject", "text", "visible_text", "html", "flags", "created_at")
_INSERT_ARTICLE = (f"INSERT INTO articles ({', '.join(_ARTICLE_COLUMNS)}) VALUES ({_marks(len(_ARTICLE_COLUMNS))})"
                   " RETURNING id")


class TicketRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def create(self, *, first_number: int, subject: str, organisation_id: int | None,
                     requester_id: int | None, follows_ticket_id: int | None = None,
                     thread_index: str | None = None) -> Ticket:
        """Open a ticket with the next free number (safe: callers hold the writer lock)."""
        number = await self._next_number(first_number)
        now = iso(utc_now())
        cursor = await self.conn.execute(
            "INSERT INTO tickets (number, subject, organisation_id, requester_id, created_at, updated_at,"
            " follows_ticket_id, thread_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (number, subject, organisation_id, requester_id, now, now, follows_ticket_id, thread_index),
        )
        ticket_id = int((await cursor.fetchone())[0])
        return Ticket(ticket_id, number, subject, "new", organisation_id, requester_id, now, now,
                      follows_ticket_id=follows_ticket_id, thread_index=thread_index)

    async def _next_number(self, first_number: int) -> int:
        """One more than the highest number, at least ``first_number``; from the backend's sequence if it has one
        (never handed out twice, even to two daemons at once)."""
        sequence = self.conn.dialect.ticket_sequence
        if sequence is None:
            async with self.conn.execute("SELECT max(number) FROM tickets") as cursor:
                row = await cursor.fetchone()
            return max(first_number, (row[0] or 0) + 1) if row else first_number
        async with self.conn.execute(f"SELECT nextval('{sequence}')") as cursor:
            number = int((await cursor.fetchone())[0])
        if number < first_number:
            await self.conn.execute(f"SELECT setval('{sequence}', CAST(? AS BIGINT))", (first_number,))
            number = first_number
        return number

    async def by_number(self, number: int) -> Ticket | None:
        async with self.conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE number = ?", (number,)) as cur:
            values = await cur.fetchone()
        return Ticket(*values) if values else None

    async def by_id(self, ticket_id: int) -> Ticket | None:
        async with self.conn.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)) as cur:
            values = await cur.fetchone()
        return Ticket(*values) if values else None

    async def by_message_ids(self, message_ids: Sequence[str]) -> dict[str, int]:
        """Ticket ids of the stored Message-IDs among ``message_ids``."""
        if not message_ids:
            return {}
        async with self.conn.execute(
            f"SELECT message_id, ticket_id FROM message_ids WHERE message_id IN ({_marks(len(message_ids))})",
            list(message_ids),
        ) as cursor:
            return {values[0]: values[1] for values in await cursor.fetchall()}

    async def touch(self, ticket_id: int) -> None:
        await self.conn.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (iso(utc_now()), ticket_id))

    async def set_status(self, ticket_id: int, status: str) -> Ticket:
        """Change the status; closing stamps ``closed_at``, any other status clears it."""
        now = iso(utc_now())
        await self.conn.execute(
            "UPDATE tickets SET status = ?, updated_at = ?, closed_at = ? WHERE id = ?",
            (status, now, now if status == "closed" else None, ticket_id),
        )
        ticket = await self.by_id(ticket_id)
        assert ticket is not None
        return ticket

    async def set_assignee(self, ticket_id: int, assignee: str | None) -> None:
        await self.conn.execute("UPDATE tickets SET assignee = ? WHERE id = ?", (assignee, ticket_id))

    async def set_thread_index(self, ticket_id: int, thread_index: str) -> None:
        await self.conn.execute("UPDATE tickets SET thread_index = ? WHERE id = ?", (thread_index, ticket_id))

    async def thread_message_ids(self, ticket_id: int) -> list[str]:
        """Every Message-ID of the ticket's thread, oldest first."""
        async with self.conn.execute(
            "SELECT message_id FROM message_ids WHERE ticket_id = ? ORDER BY created_at, rowid", (ticket_id,)
        ) as cursor:
            return [values[0] for values in await cursor.fetchall()]

    async def ticket_of_outgoing(self, message_ids: Sequence[str]) -> tuple[int, str] | None:
        """The ticket id and Message-ID of the first of ``message_ids`` that the daemon sent."""
        if not message_ids:
            return None
        async with self.conn.execute(
            f"SELECT ticket_id, message_id FROM message_ids WHERE direction = 'out'"
            f" AND message_id IN ({_marks(len(message_ids))}) LIMIT 1",
            list(message_ids),
        ) as cursor:
            values = await cursor.fetchone()
        return (values[0], values[1]) if values else None
    async def participant_ids(self, ticket_id: int) -> frozenset[int]:
        async with self.conn.execute("SELECT user_id FROM participants WHERE ticket_id = ?", (ticket_id,)) as cur:
            return frozenset(values[0] for values in await cur.fetchall())

    async def add_participants(self, ticket_id: int, members: Iterable[tuple[int, str]]) -> None:
        """Add ``(user_id, role)`` pairs; someone already taking part keeps their role."""
        now = iso(utc_now())
        await self.conn.executemany(
            "INSERT INTO participants (ticket_id, user_id, role, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(ticket_id, user_id, role, now) for user_id, role in members],
        )

    async def participants(self, ticket_id: int) -> list[ParticipantView]:
        async with self.conn.execute(
            "SELECT u.address, u.status, p.role, o.name FROM participants p JOIN users u ON u.id = p.user_id"
            " LEFT JOIN organisations o ON o.id = u.organisation_id WHERE p.ticket_id = ?"
            " ORDER BY p.role = 'cc', p.added_at, u.address",
            (ticket_id,),
        ) as cursor:
            return [ParticipantView(*values) for values in await cursor.fetchall()]

    async def copy_members(self, from_ticket_id: int, to_ticket_id: int) -> None:
        """The same participants (with their roles) and linked VMs in another ticket."""
        now = iso(utc_now())
        await self.conn.execute(
            "INSERT INTO participants (ticket_id, user_id, role, added_at)"
            " SELECT CAST(? AS INTEGER), user_id, role, CAST(? AS TEXT) FROM participants WHERE ticket_id = ?"
            " ON CONFLICT DO NOTHING", (to_ticket_id, now, from_ticket_id))
        await self.conn.execute(
            "INSERT INTO ticket_vms (ticket_id, name, vm_id, flags, added_at)"
            " SELECT CAST(? AS INTEGER), name, vm_id, flags, CAST(? AS TEXT) FROM ticket_vms WHERE ticket_id = ?"
            " ON CONFLICT DO NOTHING", (to_ticket_id, now, from_ticket_id))

    async def link_vms(self, ticket_id: int, links: Iterable[tuple[str, int | None, tuple[str, ...]]]) -> None:
        """Link ``(name, vm_id, flags)``; a VM linked before keeps its first flags."""
        now = iso(utc_now())
        await self.conn.executemany(
            "INSERT INTO ticket_vms (ticket_id, name, vm_id, flags, added_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(ticket_id, name, vm_id, json.dumps(list(flags)), now) for name, vm_id, flags in links],
        )

    async def vms(self, ticket_id: int) -> list[TicketVm]:
        async with self.conn.execute(
            # The inventory's organisation now (by name: a VM added after the mail counts); flags as at the mail.
            "SELECT tv.name, o.name, tv.flags FROM ticket_vms tv LEFT JOIN vms v ON v.name = tv.name"
            " LEFT JOIN organisations o ON o.id = v.organisation_id WHERE tv.ticket_id = ? ORDER BY tv.added_at, tv.name",
            (ticket_id,),
        ) as cursor:
            return [TicketVm(values[0], values[1], tuple(json.loads(values[2]))) for values in await cursor.fetchall()]

    async def list(self) -> list[TicketSummary]:
        async with self.conn.execute(f"{_SUMMARY} ORDER BY t.number") as cursor:
            return [TicketSummary(*values) for values in await cursor.fetchall()]

    async def summary(self, number: int) -> TicketSummary | None:
        async with self.conn.execute(f"{_SUMMARY} WHERE t.number = ?", (number,)) as cursor:
            values = await cursor.fetchone()
        return TicketSummary(*values) if values else None


class ArticleRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def find_duplicate(self, message_id: str, author_address: str) -> int | None:
        """The ticket id of an article already stored with this Message-ID and author, if any."""
        async with self.conn.execute(
            "SELECT ticket_id FROM articles WHERE message_id = ? AND author_address = ? LIMIT 1",
            (message_id, author_address.lower()),
        ) as cursor:
            values = await cursor.fetchone()
        return values[0] if values else None

    async def add(self, *, ticket_id: int, inbox_id: int | None, author_id: int | None, author_address: str,
                  author_status: str, kind: str, message_id: str | None, subject: str, text: str,
                  visible_text: str, html: str | None, flags: Sequence[str]) -> int:
        values = (ticket_id, inbox_id, author_id, author_address.lower(), author_status, kind, message_id, subject,
                  text, visible_text, html, json.dumps(list(flags)), iso(utc_now()))
        if self.conn.dialect.incremental_blobs and max(len(text), len(visible_text), len(html or "")) > BIG_TEXT:
            assert isinstance(self.conn, SqliteConnection)
            return await self.conn.in_thread(lambda conn: _add_with_big_texts(conn, values))
        cursor = await self.conn.execute(_INSERT_ARTICLE, values)
        return int((await cursor.fetchone())[0])

    async def last_customer_mail(self, ticket_id: int) -> int | None:
        """The id of the ticket's latest article written by a customer."""
        async with self.conn.execute(
            "SELECT id FROM articles WHERE ticket_id = ? AND kind = 'mail' ORDER BY id DESC LIMIT 1", (ticket_id,)
        ) as cursor:
            values = await cursor.fetchone()
        return values[0] if values else None

    async def copy_to(self, article_id: int, ticket_id: int, flags: Sequence[str]) -> int:
        """Copy an article with its attachments into another ticket; returns the copy's id."""
        cursor = await self.conn.execute(
            "INSERT INTO articles (ticket_id, inbox_id, author_id, author_address, author_status, kind, message_id,"
            " subject, text, visible_text, html, flags, created_at) SELECT CAST(? AS INTEGER), NULL, author_id,"
            " author_address, author_status, kind, NULL, subject, text, visible_text, html, CAST(? AS TEXT), created_at"
            " FROM articles WHERE id = ? RETURNING id",
            (ticket_id, json.dumps(list(flags)), article_id),
        )
        copy = int((await cursor.fetchone())[0])
        await self.conn.execute(
            "INSERT INTO article_attachments (article_id, sha256, name, content_type, size)"
            " SELECT CAST(? AS INTEGER), sha256, name, content_type, size FROM article_attachments WHERE article_id = ? ORDER BY id",
            (copy, article_id),
        )
        return copy

    async def set_flags(self, article_id: int, flags: Sequence[str]) -> None:
        await self.conn.execute("UPDATE articles SET flags = ? WHERE id = ?", (json.dumps(list(flags)), article_id))

    async def add_attachments(self, article_id: int, attachments: Sequence[NewAttachment]) -> None:
        """Store each content once (by sha256) and link it to the article with its name and type."""
        for item in attachments:
            await self.store_blob(item.sha256, item.content)
        await self.conn.executemany(
            "INSERT INTO article_attachments (article_id, sha256, name, content_type, size) VALUES (?, ?, ?, ?, ?)",
            [(article_id, item.sha256, item.name, item.content_type, len(item.content)) for item in attachments],
        )

    async def store_blob(self, sha256: str, content: bytes) -> None:
        """Store one attachment's content unless it is stored already.  A big one is written into a zeroblob by
        incremental blob I/O in the database thread: binding it to the INSERT made SQLite copy it twice and keep
        one copy in the cached statement.  (A backend without incremental I/O does the plain insert.)"""
        if len(content) <= INLINE_BYTES or not self.conn.dialect.incremental_blobs:
            await self.conn.execute("INSERT INTO attachment_blobs (sha256, size, content) VALUES (?, ?, ?)"
                                    " ON CONFLICT DO NOTHING", (sha256, len(content), content))
            return
        assert isinstance(self.conn, SqliteConnection)
        await self.conn.in_thread(lambda conn: _store_big_blob(conn, sha256, content))

    async def remember_message_id(self, message_id: str, *, ticket_id: int, article_id: int | None,
                                  direction: str) -> None:
        await self.conn.execute(
            "INSERT INTO message_ids (message_id, ticket_id, article_id, direction, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (message_id, ticket_id, article_id, direction, iso(utc_now())),
        )

    async def for_ticket(self, ticket_id: int) -> list[ArticleView]:
        async with self.conn.execute(
            "SELECT a.article_id, a.sha256, a.name, a.content_type, a.size FROM article_attachments a"
            " JOIN articles r ON r.id = a.article_id WHERE r.ticket_id = ? ORDER BY a.id",
            (ticket_id,),
        ) as cursor:
            files: dict[int, list[AttachmentView]] = {}
            for article_id, sha256, name, content_type, size in await cursor.fetchall():
                files.setdefault(article_id, []).append(AttachmentView(name, content_type, size, sha256))
        async with self.conn.execute(
            "SELECT id, author_address, author_status, kind, subject, message_id, text, visible_text, flags,"
            " created_at FROM articles WHERE ticket_id = ? ORDER BY id",
            (ticket_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            ArticleView(id=v[0], author=v[1], author_status=v[2], kind=v[3], subject=v[4], message_id=v[5],
                        text=v[6], visible_text=v[7], flags=tuple(json.loads(v[8])), created_at=v[9],
                        attachments=tuple(files.get(v[0], ())))
            for v in rows
        ]


# An article's text, visible text or HTML longer than this (characters) is written by incremental blob I/O.
BIG_TEXT = 1 << 20
_TEXT_COLUMNS = ("text", "visible_text", "html")
_PIECE = 1 << 20


def _utf8_pieces(text: str) -> Iterator[bytes]:
    """``text`` as UTF-8, a piece at a time (a character is never split: each is encoded on its own)."""
    for start in range(0, len(text), _PIECE):
        yield text[start:start + _PIECE].encode("utf-8")


def _add_with_big_texts(conn: sqlite3.Connection, values: tuple[object, ...]) -> int:
    """Insert an article with a big text (a pasted log): each big one goes in as a placeholder text of its UTF-8 size,
    then its UTF-8 is written into it piece by piece.  Bound whole, SQLite made its own copy of the text beside
    Python's UTF-8 copy of the string and the record it builds (three copies of a 20 MB log besides the string);
    this way only the placeholder and the record are made, and Python never holds the whole UTF-8 at once."""
    big = {index: value for index, value in enumerate(values)
           if _ARTICLE_COLUMNS[index] in _TEXT_COLUMNS and isinstance(value, str) and len(value) > BIG_TEXT}
    marks = ", ".join("CAST(zeroblob(?) AS TEXT)" if index in big else "?" for index in range(len(values)))
    parameters = [sum(map(len, _utf8_pieces(big[index]))) if index in big else value
                  for index, value in enumerate(values)]
    cursor = conn.execute(f"INSERT INTO articles ({', '.join(_ARTICLE_COLUMNS)}) VALUES ({marks})", parameters)
    article_id = cursor.lastrowid
    assert article_id is not None
    for index, text in big.items():
        with conn.blobopen("articles", _ARTICLE_COLUMNS[index], article_id) as blob:
            for piece in _utf8_pieces(text):
                blob.write(piece)
    return article_id


def _store_big_blob(conn: sqlite3.Connection, sha256: str, content: bytes) -> None:
    cursor = conn.execute("INSERT OR IGNORE INTO attachment_blobs (sha256, size, content) VALUES (?, ?, zeroblob(?))",
                          (sha256, len(content), len(content)))
    if cursor.rowcount == 1 and cursor.lastrowid is not None:
        with conn.blobopen("attachment_blobs", "content", cursor.lastrowid) as blob:
            blob.write(content)
