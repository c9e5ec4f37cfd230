"""Idle SMTP clients cannot lock others out: per-client limits, idle commands, session length, busy timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosmtplib

from mailticketd.app import Daemon
from tests.helpers import SUPPORT, make_config, make_mail


class Line:
    """A bare SMTP connection from a chosen loopback address, read line by line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Line:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def reply(self, timeout: float = 5.0) -> bytes:
        """The next reply line (b"" once the server has closed)."""
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def command(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def test_one_client_address_cannot_take_every_session(tmp_path: Path) -> None:
    """Past ``max_connections_per_client`` a client gets 421 4.7.0, while another address is still served."""
    config = make_config(tmp_path, smtp={"max_connections_per_client": 2})
    async with Daemon(config) as daemon:
        held = [await Line.open(daemon.smtp_port) for _ in range(2)]
        for line in held:
            assert (await line.reply()).startswith(b"220")
        third = await Line.open(daemon.smtp_port)
        other = await Line.open(daemon.smtp_port, source="127.0.0.2")
        try:
            assert (await third.reply()).startswith(b"421 4.7.0")
            assert await third.reply() == b""
            assert (await other.reply()).startswith(b"220")
        finally:
            for line in (*held, third, other):
                line.close()


async def test_noop_without_a_mail_cannot_keep_a_session_forever(tmp_path: Path) -> None:
    """After ``max_idle_commands`` NOOP/RSET/HELP without a mail, the session is closed with 421 4.7.0."""
    async with Daemon(make_config(tmp_path, smtp={"max_idle_commands": 4})) as daemon:
        line = await Line.open(daemon.smtp_port)
        try:
            await line.reply()
            answers = [await line.command(command) for command in ("NOOP", "RSET", "HELP", "NOOP", "NOOP")]
            assert all(answer.startswith(b"250") for answer in answers[:4]), answers
            assert answers[4].startswith(b"421 4.7.0")
            assert await line.reply() == b""
        finally:
            line.close()


async def test_a_mail_resets_the_count_of_idle_commands(tmp_path: Path) -> None:
    """A client that sends mails between its RSETs is never cut off for idling."""
    async with Daemon(make_config(tmp_path, smtp={"max_idle_commands": 2})) as daemon:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
            for _ in range(3):
                await client.rset()
                await client.rset()
                errors, _ = await client.sendmail("kunde@customer.example", [SUPPORT], make_mail())
                assert not errors
            assert (await client.noop())[0] == 250


async def test_a_session_ends_after_max_session_time_however_busy(tmp_path: Path) -> None:
    """A client that keeps talking is told 421 4.4.2 once ``max_session_time`` has passed."""
    async with Daemon(make_config(tmp_path, smtp={"max_session_time": 1.0})) as daemon:
        line = await Line.open(daemon.smtp_port)
        try:
            await line.reply()
            answers = []
            for _ in range(10):
                answer = await line.command("EHLO client.example")
                while answer.startswith(b"250-"):
                    answer = await line.reply()
                answers.append(answer)
                if not answer.startswith(b"250"):
                    break
                await asyncio.sleep(0.3)
            assert answers[-1].startswith(b"421 4.4.2"), answers
            assert len(answers) < 10
        finally:
            line.close()


async def test_when_all_sessions_are_taken_a_new_client_replaces_an_idle_one(tmp_path: Path) -> None:
    """With every session held by idle clients, a new client is served and the longest-idle one gets 421 4.4.2."""
    config = make_config(tmp_path, smtp={"max_connections": 3, "busy_idle_timeout": 0.5})
    async with Daemon(config) as daemon:
        idle = [await Line.open(daemon.smtp_port, source=f"127.0.0.{n}") for n in (2, 3, 4)]
        for line in idle:
            await line.reply()
        await asyncio.sleep(0.7)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
            errors, reply = await client.sendmail("kunde@customer.example", [SUPPORT], make_mail())
        assert not errors and reply.startswith("2.0.0")
        goodbyes = [await _reply_or_nothing(line) for line in idle]
        for line in idle:
            line.close()
    assert any(goodbye.startswith(b"421 4.4.2") for goodbye in goodbyes), goodbyes


async def _reply_or_nothing(line: Line) -> bytes:
    try:
        return await line.reply(timeout=0.5)
    except TimeoutError:
        return b"(still open)"


async def test_idle_timeout_shrinks_as_the_limit_comes_near(tmp_path: Path) -> None:
    """An idle session is kept while few are open, but closed after ``busy_idle_timeout`` once most are taken."""
    config = make_config(tmp_path, smtp={"max_connections": 4, "busy_idle_timeout": 0.5})
    async with Daemon(config) as daemon:
        alone = await Line.open(daemon.smtp_port)
        await alone.reply()
        await asyncio.sleep(1.0)
        assert (await alone.command("NOOP")).startswith(b"250")
        crowd = [await Line.open(daemon.smtp_port, source=f"127.0.0.{n}") for n in (2, 3)]
        for line in crowd:
            await line.reply()
        # Three of four sessions are open now: the idle timeout is the short one.
        latecomer = await Line.open(daemon.smtp_port, source="127.0.0.5")
        try:
            await latecomer.reply()
            assert (await latecomer.reply(timeout=3.0)).startswith(b"421 4.4.2")
        finally:
            for line in (alone, *crowd, latecomer):
                line.close()


class _Idle:
    def __init__(self, client: str, idle_since: float) -> None:
        self.client, self.idle_since = client, idle_since
        self.told: list[str] = []

    def close_with(self, reply: str) -> None:
        self.told.append(reply)


def test_a_full_table_makes_room_by_closing_the_longest_idle_session(tmp_path: Path) -> None:
    """When every session is taken, the one idle longest past ``busy_idle_timeout`` is told 421 4.4.2 and replaced."""
    from mailticketd.smtp.limits import Sessions

    limits = make_config(tmp_path, smtp={"max_connections": 2, "busy_idle_timeout": 10.0}).smtp
    sessions = Sessions()
    old, recent = _Idle("192.0.2.1", 0.0), _Idle("192.0.2.2", 95.0)
    assert sessions.admit(old, limits, now=0.0) is None
    assert sessions.admit(recent, limits, now=95.0) is None
    assert sessions.admit(_Idle("192.0.2.3", 100.0), limits, now=100.0) is None
    assert old.told == ["421 4.4.2 Idle for too long; closing the connection"] and recent.told == []
    refusal = sessions.admit(_Idle("192.0.2.4", 101.0), limits, now=101.0)
    assert refusal is not None and refusal[0].startswith("421 4.3.2")
