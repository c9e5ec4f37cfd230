"""A big mail streams through spool, inbox, parser and attachment store without losing or changing a byte."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from importlib import resources
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.storage.db import _statements
from tests.helpdesk import COLLEAGUE, MANAGER, browserless, people
from tests.helpers import make_config, make_mail, settle
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, to

# Past the SMTP spool threshold and the inbox's whole-read size (1 MiB): the chunked path end to end.
BINARY = os.urandom(3_000_000)
ARCHIVE = os.urandom(1_500_001)
TEXT = ("Protokoll von de-fr-srv-0815: Größe überschritten, Prüfung läuft.\n" * 8000).encode("utf-8")
FILES = [
    ("speicher.bin", "application/octet-stream", BINARY),
    ("dump.tar.gz", "application/gzip", ARCHIVE),
    ("protokoll.txt", "text/plain", TEXT),
    ("klein.dat", "application/octet-stream", b"\x00\x01\x02"),
    ("kopie.bin", "application/octet-stream", BINARY),  # the same content again: stored once, listed twice
]


async def test_every_attachment_of_a_big_mail_arrives_byte_identical_and_downloads_whole(tmp_path: Path) -> None:
    """An 11 MB mail with five attachments becomes one ticket whose files are byte for byte those sent, also as
    downloads from the helpdesk."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        raw = make_mail(COLLEAGUE, subject="Speicherabbild von de-fr-srv-0815", attachments=FILES)
        assert len(raw) > 10_000_000
        await deliver(daemon, raw)
        async with daemon.db.read() as store:
            [row] = await store.inbox.list(("done", "pending", "failed"))
            assert row.status == "done" and row.ticket_number == 10000 and row.size == len(raw.replace(b"\n", b"\r\n"))
            ticket = await store.tickets.by_number(10000)
            assert ticket is not None
            [article] = await store.articles.for_ticket(ticket.id)
        assert [(item.name, item.size) for item in article.attachments] == [(n, len(c)) for n, _, c in FILES]
        assert [item.sha256 for item in article.attachments] == [hashlib.sha256(c).hexdigest() for _, _, c in FILES]
        async with daemon.db.read() as store:  # on either backend
            stored = {sha256: bytes(content) for sha256, content in
                      await store.conn.execute_fetchall("SELECT sha256, content FROM attachment_blobs")}
        assert len(stored) == 4 and all(stored[hashlib.sha256(c).hexdigest()] == c for _, _, c in FILES)
        async with browserless(daemon, address=MANAGER) as manager:
            page = (await manager.get("/tickets/10000"))[1]
            links = re.findall(r'href="(/tickets/10000/files/[^"]+)"', page)
            assert len(links) == len(FILES)
            for link, (name, content_type, content) in zip(links, FILES):
                async with manager.session.get(link) as response:
                    assert response.status == 200 and response.headers["Content-Type"].startswith(content_type)
                    assert await response.read() == content, name


LOG_LINE = "2026-11-30 03:14:13 de-fr-srv-0815 kernel: Größe überschritten, Prüfung läuft weiter, Lauf"


def _log_mail(log: str, html: str | None = None, subject: str = "Protokoll von de-fr-srv-0815") -> bytes:
    message = EmailMessage()
    message["From"] = COLLEAGUE
    message["To"] = "support@provider.example"
    message["Subject"] = subject
    message.set_content(log, cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()


async def test_a_pasted_log_is_stored_whole_and_shown_whole_on_the_ticket_page(tmp_path: Path) -> None:
    """A mail whose body is a pasted 3 MB log becomes an article holding every character of it: the ticket page
    shows all of it (its first megabyte as the message, the whole under the fold) and the operators' notice
    carries the first megabyte."""
    log = "Hallo,\n\nhier das Protokoll:\n\n" + "".join(f"{LOG_LINE} {n}\n" for n in range(32000)) + "Grüße, Bob\n"
    assert len(log) > 3_000_000
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, _log_mail(log))
        async with daemon.db.read() as store:
            ticket = await store.tickets.by_number(10000)
            assert ticket is not None
            [article] = await store.articles.for_ticket(ticket.id)
        assert article.text == log
        assert article.visible_text.startswith(log[:1000]) and 1_000_000 < len(article.visible_text) < 1 << 20
        async with browserless(daemon, address=MANAGER) as manager:
            page = (await manager.get("/tickets/10000"))[1]
        assert page.count(f"{LOG_LINE} 1\n") == 2 and log.strip() in page  # as the message, and whole
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        text = body_of(parsed(notice))
        assert article.visible_text in text.replace("\r\n", "\n") and f"{LOG_LINE} 31999" not in text


async def test_a_big_html_body_is_stored_whole(tmp_path: Path) -> None:
    """A mail with a 2 MB text and a 2 MB HTML version of a log keeps both whole in its article."""
    log = "".join(f"{LOG_LINE} {n}\n" for n in range(20000))
    html = "<html><body><pre>" + log + "</pre></body></html>\n"
    async with desk(tmp_path) as (daemon, _):
        await people(daemon)
        await deliver(daemon, _log_mail(log, html))
        async with daemon.db.read() as store:
            ticket = await store.tickets.by_number(10000)
            assert ticket is not None
            [article] = await store.articles.for_ticket(ticket.id)
            [(stored_html,)] = await store.conn.execute_fetchall("SELECT html FROM articles WHERE id = ?",
                                                                 (article.id,))
    assert article.text == log and stored_html == html


async def test_a_forwarded_big_log_is_shown_whole(tmp_path: Path) -> None:
    """A forwarded mail holding a 2 MB log opens a ticket whose message is all of the forwarded text."""
    log = "---------- Forwarded message ---------\n" + "".join(f"{LOG_LINE} {n}\n" for n in range(20000))
    async with desk(tmp_path) as (daemon, _):
        await people(daemon)
        await deliver(daemon, _log_mail(log, subject="Fwd: Protokoll von de-fr-srv-0815"))
        async with daemon.db.read() as store:
            ticket = await store.tickets.by_number(10000)
            assert ticket is not None
            [article] = await store.articles.for_ticket(ticket.id)
    assert article.text == log and article.visible_text == log.strip()


@pytest.mark.sqlite_only
async def test_pending_mails_stored_before_the_upgrade_are_processed_with_their_attachments(tmp_path: Path) -> None:
    """A database of schema 8 with a big mail still pending keeps its bytes through migrations 0009–0011 (the
    bytes move to their own table) and the mail becomes a ticket with its attachment intact."""
    config = make_config(tmp_path)
    database = config.storage.database
    database.parent.mkdir(parents=True, exist_ok=True)
    raw = make_mail(subject="Vor dem Update", attachments=[("alt.bin", "application/octet-stream", ARCHIVE)])
    folder = resources.files("mailticketd.storage").joinpath("migrations", "sqlite")
    with sqlite3.connect(database, isolation_level=None) as conn:
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            version = int(entry.name.split("_", 1)[0]) if entry.name.endswith(".sql") else 99
            if version <= 8:
                for statement in _statements(entry.read_text("utf-8")):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 8")
        conn.execute("INSERT INTO inbox (received_at, peer, mail_from, rcpt_tos, message_id, size, raw)"
                     " VALUES ('2026-01-01T00:00:00+00:00', '', 'kunde@customer.example', '[\"s@x\"]', NULL, ?, ?)",
                     (len(raw), raw))
    async with Daemon(config) as daemon:
        await settle(daemon)
        async with daemon.db.read() as store:
            [row] = await store.inbox.list(("done", "pending", "failed"))
            ticket = await store.tickets.by_number(row.ticket_number or 0)
            assert row.status == "done" and ticket is not None and ticket.subject == "Vor dem Update"
            [article] = await store.articles.for_ticket(ticket.id)
    assert [(item.name, item.sha256) for item in article.attachments] == [
        ("alt.bin", hashlib.sha256(ARCHIVE).hexdigest())]
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT raw FROM inbox_raw").fetchone()[0] == raw
        assert "raw" not in {column[1] for column in conn.execute("PRAGMA table_info(inbox)")}
