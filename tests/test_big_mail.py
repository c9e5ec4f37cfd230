"""A big mail streams through spool, inbox, parser and attachment store without losing or changing a byte."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.storage.db import _statements
from tests.helpdesk import COLLEAGUE, MANAGER, browserless, people
from tests.helpers import make_config, make_mail, settle
from tests.outbound import deliver, desk

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
