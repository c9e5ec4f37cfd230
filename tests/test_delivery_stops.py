"""A database that cannot be written stops delivery: no mail goes out twice, the health report says why."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mailticketd.app import Daemon
from mailticketd.config import Config
from mailticketd.outbox.transports import Transport
from tests.helpers import SUPPORT, make_config
from tests.outbound import mails_to
from tests.sink import Sink


@contextmanager
def writes_refused(database: Path) -> Iterator[sqlite3.Connection]:
    """Another process holds the write lock: the daemon's writes fail with "database is locked", reads work."""
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield blocker
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def queue(daemon: Daemon, rcpt: str, message_id: str) -> int:
    raw = (f"From: Support <{SUPPORT}>\r\nTo: {rcpt}\r\nSubject: [MH#1] Hallo\r\n"
           f"Message-ID: <{message_id}>\r\n\r\nHallo.\r\n").encode()
    async with daemon.db.transaction() as store:
        return await store.outbox.enqueue(ticket_id=None, kind="reply", mail_from=SUPPORT, rcpt_to=rcpt,
                                          message_id=message_id, raw=raw)


async def status_of(daemon: Daemon, outbox_id: int) -> str:
    async with daemon.db.read() as store:
        row = await store.outbox.get(outbox_id)
    assert row is not None
    return row.status


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def desk_config(tmp_path: Path, sink: Sink) -> Config:
    return make_config(tmp_path, storage={"busy_timeout": 0.1},
                       outbound={"transport": "smtp", "relay": sink.relay, "relay_security": "none",
                                 "poll_interval": 0.05, "retry_delay": 0.2})


async def test_nothing_is_sent_while_the_database_cannot_be_written(tmp_path: Path) -> None:
    """With the database locked by another writer a queued mail is not sent at all; once it is free, exactly once."""
    async with Sink() as sink:
        async with Daemon(desk_config(tmp_path, sink)) as daemon:
            outbox_id = await queue(daemon, "anna@customer.example", "once@example.net")
            with writes_refused(daemon.config.storage.database):
                daemon.delivery.wake()
                await asyncio.sleep(2.0)  # some 20 polls
                assert sink.received == []
                report = await daemon.health()
                assert report["ok"] is False
                assert report["database"]["ok"] is True  # it answers reads; it cannot be written
                assert report["outbox"]["ok"] is False
                assert "locked" in report["outbox"]["stopped"]["error"]
            daemon.delivery.wake()
            await until(lambda: _is_sent(daemon, outbox_id))
            await asyncio.sleep(0.5)
            assert [item.rcpt_tos for item in sink.received] == [("anna@customer.example",)]
            report = await daemon.health()
            assert report["ok"] is True and "stopped" not in report["outbox"]


async def _is_sent(daemon: Daemon, outbox_id: int) -> bool:
    return await status_of(daemon, outbox_id) == "sent"


class LockAfterSend:
    """A real transport that, right after its first send, has another process take the database's write lock."""

    def __init__(self, inner: Transport, database: Path) -> None:
        self.inner = inner
        self.database = database
        self.blocker: sqlite3.Connection | None = None

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        await self.inner.send(mail_from, rcpt_to, raw, delivery_id=delivery_id)
        if self.blocker is None:
            self.blocker = sqlite3.connect(self.database, isolation_level=None)
            self.blocker.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        assert self.blocker is not None
        self.blocker.execute("ROLLBACK")
        self.blocker.close()


async def test_a_sent_mail_whose_mark_fails_is_not_sent_again(tmp_path: Path) -> None:
    """When the "sent" mark cannot be written the mail is not repeated, the queue waits, and it resumes once writable."""
    async with Sink() as sink:
        async with Daemon(desk_config(tmp_path, sink)) as daemon:
            transport = LockAfterSend(daemon.delivery.transport, daemon.config.storage.database)
            daemon.delivery.transport = transport
            first = await queue(daemon, "anna@customer.example", "first@example.net")
            second = await queue(daemon, "bert@customer.example", "second@example.net")
            daemon.delivery.wake()
            await mails_to(sink, 1)
            await asyncio.sleep(2.0)  # some 20 polls with the database refusing writes
            assert [item.rcpt_tos for item in sink.received] == [("anna@customer.example",)]
            report = await daemon.health()
            assert report["ok"] is False
            assert report["outbox"]["stopped"]["sent_not_recorded"] == 1
            transport.release()
            daemon.delivery.wake()
            await until(lambda: _is_sent(daemon, second))
            assert await status_of(daemon, first) == "sent"
            await asyncio.sleep(0.5)
            assert sorted(item.rcpt_tos for item in sink.received) == [
                ("anna@customer.example",), ("bert@customer.example",)]
            assert (await daemon.health())["ok"] is True
