"""Big mails cost disk, not memory: DATA is spooled past a threshold and parsing keeps few copies."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import tracemalloc
from pathlib import Path

from mailticketd.app import Daemon
from mailticketd.mail.parse import parse_mail
from tests.helpers import SUPPORT, make_config, make_mail, settle


async def test_data_past_the_threshold_goes_to_a_spool_file_and_is_stored_whole(tmp_path: Path) -> None:
    """While a 2 MB mail is in DATA it lies in ``spool_directory``; after the dot it is stored byte for byte and the file is gone."""
    spool = tmp_path / "spool"
    spool.mkdir()
    config = make_config(tmp_path, smtp={"spool_threshold": 65536, "spool_directory": str(spool)})
    raw = make_mail(attachments=[("backup.bin", "application/octet-stream", os.urandom(1_500_000))])
    wire = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    async with Daemon(config) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
        try:
            await reader.readline()
            for command in (b"HELO client.example", b"MAIL FROM:<kunde@customer.example>",
                            f"RCPT TO:<{SUPPORT}>".encode(), b"DATA"):
                writer.write(command + b"\r\n")
                await reader.readline()
            writer.write(wire)
            await writer.drain()
            for _ in range(100):
                spooled = _spooled_bytes(spool)
                if spooled >= len(wire) - 65536:
                    break
                await asyncio.sleep(0.05)
            assert spooled > 65536
            writer.write(b".\r\n")
            assert (await reader.readline()).startswith(b"250 2.0.0")
        finally:
            writer.close()
        assert _spooled_bytes(spool) == 0
        await settle(daemon)
    with sqlite3.connect(config.storage.database) as conn:
        [(stored,)] = conn.execute("SELECT raw FROM inbox_raw").fetchall()
    assert stored == wire


async def test_dot_stuffed_lines_and_the_size_limit_still_hold_with_a_spool(tmp_path: Path) -> None:
    """A line starting with a dot arrives unstuffed, and a mail over the limit is refused 552 and not kept."""
    config = make_config(tmp_path, smtp={"spool_threshold": 1024, "max_message_size": 200_000})
    async with Daemon(config) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
        try:
            await reader.readline()
            answers = []
            small = b"Subject: dots\r\n\r\n..leading dot\r\n" + b"x" * 2000 + b"\r\n.\r\n"
            big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 300 + b".\r\n"
            for data in (small, big):
                for command in (b"HELO client.example", b"MAIL FROM:<kunde@customer.example>",
                                f"RCPT TO:<{SUPPORT}>".encode(), b"DATA"):
                    writer.write(command + b"\r\n")
                    await reader.readline()
                writer.write(data)
                answers.append(await reader.readline())
                writer.write(b"RSET\r\n")
                await reader.readline()
        finally:
            writer.close()
        await settle(daemon)
    assert answers[0].startswith(b"250") and answers[1].startswith(b"552 5.3.4"), answers
    with sqlite3.connect(config.storage.database) as conn:
        rows = conn.execute("SELECT raw FROM inbox_raw").fetchall()
    assert len(rows) == 1 and b"\r\n.leading dot\r\n" in rows[0][0]


def test_parsing_a_big_mail_holds_few_copies_of_it() -> None:
    """Parsing a 5 MB mail allocates at most four times its size at the peak, and the attachment comes out whole."""
    content = os.urandom(4 * 1024 * 1024)
    raw = make_mail(attachments=[("backup.bin", "application/octet-stream", content)])
    tracemalloc.start()
    try:
        mail = parse_mail(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [attachment.content == content for attachment in mail.attachments] == [True]
    assert mail.text.startswith("Hello, de-fr-srv-0815")
    assert peak < 4 * len(raw), f"peak {peak / len(raw):.1f} times the mail"


def test_a_big_attachment_with_broken_base64_padding_is_still_decoded() -> None:
    """A large base64 attachment missing its padding is decoded leniently rather than lost."""
    content = os.urandom(2 * 1024 * 1024 + 1)
    broken = (b"From: kunde@customer.example\r\nSubject: backup\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=backup.bin\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(content).rstrip(b"=\n") + b"\r\n")
    [attachment] = parse_mail(broken).attachments
    assert attachment.content[:1000] == content[:1000]


def _spooled_bytes(folder: Path) -> int:
    """Bytes in this process's open files under ``folder`` (spool files have no name: O_TMPFILE)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
                total += os.fstat(int(fd)).st_size
        except OSError:
            continue
    return total
