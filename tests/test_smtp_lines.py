"""DATA as real senders write it: bare LF line ends and over-long lines are accepted, never refused for good."""

from __future__ import annotations

import asyncio
import sqlite3

from mailticketd.app import Daemon
from mailticketd.smtp.lines import DataLines
from mailticketd.smtp.spool import _unstuffed
from tests.helpers import SUPPORT, settle


async def _raw_transaction(port: int, data: bytes) -> list[bytes]:
    """Speak SMTP byte for byte (no client library fixes the line ends); returns the server's replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    for command in (b"EHLO client.example", b"MAIL FROM:<kunde@customer.example>", f"RCPT TO:<{SUPPORT}>".encode(),
                    b"DATA"):
        writer.write(command + b"\r\n")
        await writer.drain()
        while (line := await reader.readline())[3:4] == b"-":
            pass
        replies.append(line)
    writer.write(data)
    await writer.drain()
    replies.append(await asyncio.wait_for(reader.readline(), 30))
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()
    return replies


def _stored(daemon: Daemon) -> list[bytes]:
    with sqlite3.connect(daemon.config.storage.database) as conn:
        return [row[0] for row in conn.execute("SELECT raw FROM inbox_raw ORDER BY inbox_id")]


async def test_bare_lf_mail_over_64_kib_is_accepted_with_its_lines(daemon: Daemon) -> None:
    """A 100 KiB mail whose lines end in LF alone gets 250 and is stored line by line, then processed."""
    body = b"".join(b"Zeile %05d des Berichts\n" % n for n in range(4000))
    head = b"From: kunde@customer.example\nTo: support@example.net\nSubject: Bare LF\n\n"
    replies = await _raw_transaction(daemon.smtp_port, head + body + b"\r\n.\r\n")
    assert replies[-1].startswith(b"250 "), replies[-1]
    [raw] = _stored(daemon)
    assert b"\r\nZeile 03999 des Berichts\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    await settle(daemon)
    with sqlite3.connect(daemon.config.storage.database) as conn:
        (text,) = conn.execute("SELECT text FROM articles").fetchone()
    assert "Zeile 03999 des Berichts" in text


async def test_a_line_over_64_kib_is_accepted_and_wrapped_not_refused(daemon: Daemon) -> None:
    """A single 200 KiB line gets 250 (not a permanent 500) and every byte of it is kept, wrapped as Postfix does."""
    line = b"".join(b"%07d," % n for n in range(25000))
    head = b"From: kunde@customer.example\r\nTo: support@example.net\r\nSubject: Long line\r\n\r\n"
    replies = await _raw_transaction(daemon.smtp_port, head + b"ok\r\n" + line + b"\r\n.\r\n")
    assert replies[-1].startswith(b"250 "), replies[-1]
    [raw] = _stored(daemon)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert body.replace(b"\r\n ", b"") == b"ok\r\n" + line + b"\r\n"
    assert max(len(part) for part in body.split(b"\r\n")) <= daemon.config.smtp.max_line_length


async def test_a_dot_after_a_bare_lf_does_not_end_the_mail(daemon: Daemon) -> None:
    """``<LF>.<LF>`` inside DATA is text: no second mail can be smuggled in behind it."""
    smuggled = (b"From: kunde@customer.example\r\nSubject: One\r\n\r\nfirst\n.\n"
                b"MAIL FROM:<ceo@example.net>\r\nRCPT TO:<support@example.net>\r\nDATA\r\n"
                b"From: ceo@example.net\r\nSubject: Two\r\n\r\nforged\r\n.\r\n")
    replies = await _raw_transaction(daemon.smtp_port, smuggled)
    assert replies[-1].startswith(b"250 "), replies[-1]
    [raw] = _stored(daemon)
    assert b"MAIL FROM:<ceo@example.net>" in raw and b"forged" in raw


async def test_a_mail_and_the_commands_after_it_in_one_write_are_read_apart(daemon: Daemon) -> None:
    """A client that writes a whole mail, its final dot and its next commands at once (pipelining) gets each answer,
    and the mail is stored exactly: dot-stuffed lines unstuffed wherever the network cut the stream."""
    body = b"".join(b"..Zeile %04d beginnt mit einem Punkt\r\nZeile %04d\r\n" % (n, n) for n in range(2000))
    head = b"From: kunde@customer.example\r\nTo: support@example.net\r\nSubject: Punkte\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
    await reader.readline()
    for command in (b"EHLO client.example", b"MAIL FROM:<kunde@customer.example>", f"RCPT TO:<{SUPPORT}>".encode(),
                    b"DATA"):
        writer.write(command + b"\r\n")
        while (line := await reader.readline())[3:4] == b"-":
            pass
    writer.write(head + body + b".\r\nRSET\r\nNOOP\r\n")
    answers = [await asyncio.wait_for(reader.readline(), 30) for _ in range(3)]
    writer.write(b"QUIT\r\n")
    writer.close()
    assert [answer[:3] for answer in answers] == [b"250", b"250", b"250"], answers
    [raw] = _stored(daemon)
    assert raw == head + body.replace(b"\r\n..", b"\r\n.").removeprefix(b".")


async def test_lines_needing_care_amid_plain_ones_are_normalised_alike(daemon: Daemon) -> None:
    """Plain CRLF lines around a bare LF, an over-long line and a dot-stuffed line, all in one write: each is
    stored as if it had come on its own."""
    piece = daemon.config.smtp.max_line_length - 3
    plain = b"".join(b"Zeile %04d\r\n" % n for n in range(500))
    long_line = b"L" * (piece + 10)
    data = (b"From: kunde@customer.example\r\nSubject: Gemischt\r\n\r\n" + plain + b"bare\n" + plain
            + b"..Punkt\r\n" + long_line + b"\r\n" + plain + b".\r\n")
    replies = await _raw_transaction(daemon.smtp_port, data)
    assert replies[-1].startswith(b"250 "), replies[-1]
    [raw] = _stored(daemon)
    expected = (b"From: kunde@customer.example\r\nSubject: Gemischt\r\n\r\n" + plain + b"bare\r\n" + plain
                + b".Punkt\r\n" + long_line[:piece] + b"\r\n " + long_line[piece:] + b"\r\n" + plain)
    assert raw == expected


class _Unpeekable:
    """A stream without asyncio's buffer to look into: ``DataLines`` reads it line by line, as it always did."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readuntil(self, separator: bytes) -> bytes:
        return await self._reader.readuntil(separator)

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)


async def _data_read(chunks: list[bytes], *, peek: bool) -> tuple[bytes, bytes, int, int, int]:
    """What the DATA loop stores of ``chunks`` fed one by one, what stays in the stream, the reader's counts and the
    most lines one read gave."""
    reader = asyncio.StreamReader(limit=64)
    lines = DataLines(reader if peek else _Unpeekable(reader), 64)  # type: ignore[arg-type]

    async def feed() -> None:
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)

    feeding = asyncio.ensure_future(feed())
    stored, most = [], 0
    while (block := await lines.readuntil(b"\r\n")) != b".\r\n":
        stored.append(_unstuffed(block))
        most = max(most, block.count(b"\r\n"))
    await feeding
    return b"".join(stored), bytes(reader._buffer), lines.breaks, lines.bare_lf, most


async def test_blocks_of_lines_read_as_the_lines_one_by_one_wherever_the_stream_is_cut() -> None:
    """Dot-stuffed lines, CR CR LF, a line of exactly the longest length and one over it, a bare LF and the end of
    data with a command behind it, cut into two reads at every place: taken in blocks, the stored mail, what stays
    for the next command and the counts of broken lines and bare LFs are those of the line-by-line reading."""
    piece = 64 - 3
    sample = (b"..erste\r\nzweite\r\r\n" + b"x" * piece + b"\r\n" + b".punkt\r\nc\nd\r\n" + b"y" * (piece + 9)
              + b"\r\n" + b"z\r\n" * 20 + b".\r\nNOOP\r\n")
    for cut in range(len(sample) + 1):
        chunks = [part for part in (sample[:cut], sample[cut:]) if part]
        by_blocks, by_lines = await _data_read(chunks, peek=True), await _data_read(chunks, peek=False)
        assert by_blocks[:4] == by_lines[:4], cut
    whole, _, _, _, _ = await _data_read([sample], peek=True)
    assert whole.startswith(b".erste\r\nzweite\r\r\n") and b"\r\npunkt\r\nc\r\nd\r\n" in whole
    plain, left, _, _, most = await _data_read([b"..z\r\n" * 30 + b".\r\nNOOP\r\n"], peek=True)
    assert (plain, left) == (b".z\r\n" * 30, b"NOOP\r\n") and most > 20  # the lines waiting came in one read
