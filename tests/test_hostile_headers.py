"""Hostile headers: a mail with a huge subject or name neither freezes the daemon nor grows what it stores."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiosmtplib

from mailticketd.app import Daemon
from tests.helpers import SUPPORT, make_config, make_mail, send, settle


def huge_header_mail(size: int = 1_000_000) -> bytes:
    """A mail whose Subject is ``size`` bytes of legal folded lines (each under 1000 bytes)."""
    line = ("Serverausfall " * 50).strip()
    lines = [line] * (size // (len(line) + 3))
    subject = "\r\n ".join(lines)
    return (f"From: Kunde <kunde@customer.example>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            "Message-ID: <huge@customer.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            "\r\nHallo, de-fr-srv-0815 antwortet nicht.\r\n").encode()


async def _probe(port: int) -> float:
    """Seconds from connecting to the 250 after DATA, for a small mail from a second client."""
    started = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
        _, reply = await client.sendmail("other@customer.example", [SUPPORT], make_mail("other@customer.example"))
    assert reply.startswith("2.0.0"), reply
    return time.perf_counter() - started


async def _handled(daemon: Daemon, inbox_id: int) -> bool:
    async with daemon.db.read() as store:
        row = await store.inbox.get(inbox_id)
    return row is not None and row.status != "pending"


async def test_a_one_megabyte_subject_does_not_stop_other_clients(tmp_path: Path) -> None:
    """While a mail with a 1 MB folded Subject is processed, a second SMTP client gets its banner and 250 within a second."""
    async with Daemon(make_config(tmp_path)) as daemon:
        reply = await send(daemon.smtp_port, huge_header_mail())
        inbox_id = int(reply.rsplit(" ", 1)[1])
        probes: list[float] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probes.append(await _probe(daemon.smtp_port))
            if await _handled(daemon, inbox_id):
                break
            await asyncio.sleep(0.05)
        await settle(daemon)
        assert await _handled(daemon, inbox_id)
        assert max(probes) < 1.0, [round(probe, 2) for probe in probes]
        with sqlite3.connect(daemon.config.storage.database) as conn:
            decisions = [row[0] for row in conn.execute("SELECT status FROM inbox")]
            outgoing = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        assert set(decisions) == {"done"}, decisions
        assert outgoing >= 2  # the acknowledgement and the operator notice left as usual


async def test_a_huge_subject_is_stored_and_sent_capped_and_kept_whole_in_the_raw_mail(tmp_path: Path) -> None:
    """The ticket's subject and every outgoing Subject hold at most 998 bytes; the full text stays in the stored raw mail."""
    raw = huge_header_mail(200_000)
    async with Daemon(make_config(tmp_path)) as daemon:
        await send(daemon.smtp_port, raw)
        await settle(daemon)
        with sqlite3.connect(daemon.config.storage.database) as conn:
            (subject,) = conn.execute("SELECT subject FROM tickets").fetchone()
            (article_subject,) = conn.execute("SELECT subject FROM articles").fetchone()
            (stored,) = conn.execute("SELECT raw FROM inbox_raw").fetchone()
            sent = [bytes(row[0]) for row in conn.execute("SELECT raw FROM outbox")]
    assert subject.startswith("Serverausfall Serverausfall")
    assert len(subject.encode()) <= 998 and len(article_subject.encode()) <= 998
    assert bytes(stored) == raw
    assert sent
    for mail in sent:
        header = mail.split(b"\r\n\r\n", 1)[0]
        unfolded = header.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")
        (subject_line,) = [line for line in unfolded.split(b"\r\n") if line.lower().startswith(b"subject:")]
        assert len(subject_line) < 2000, len(subject_line)


async def test_a_huge_display_name_is_stored_and_sent_capped(tmp_path: Path) -> None:
    """A sender's 100 KB display name is kept to a sane length on the user and in the acknowledgement's To."""
    name = "\r\n ".join(["Hans Müller von der Firma"] * 4000)
    raw = (f"From: {name} <kunde@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Hallo\r\n"
           "Message-ID: <name@customer.example>\r\n\r\nHallo.\r\n").encode()
    async with Daemon(make_config(tmp_path)) as daemon:
        await send(daemon.smtp_port, raw)
        await settle(daemon)
        with sqlite3.connect(daemon.config.storage.database) as conn:
            (stored_name,) = conn.execute("SELECT name FROM users WHERE address = 'kunde@customer.example'").fetchone()
            acks = [bytes(row[0]) for row in conn.execute("SELECT raw FROM outbox WHERE rcpt_to = 'kunde@customer.example'")]
    assert stored_name.startswith("Hans Müller")
    assert len(stored_name.encode()) <= 256
    assert acks and all(len(ack) < 20_000 for ack in acks)
