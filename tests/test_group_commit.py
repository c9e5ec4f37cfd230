"""Group commit: concurrent sessions' mails share one durable COMMIT, and each hears 250 only after it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosmtplib

from mailticketd.app import Daemon
from tests.helpers import SUPPORT, make_config, make_mail


async def _deliver(port: int, raw: bytes) -> tuple[int, str]:
    """One session sending ``raw``; returns the code and text of the answer after the final dot."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
        await client.mail("kunde@customer.example")
        await client.rcpt(SUPPORT)
        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPDataError as refused:
            return refused.code, refused.message
    return response.code, response.message


async def _stored(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT message_id FROM inbox ORDER BY id")]


async def test_mails_of_concurrent_sessions_are_answered_after_one_shared_commit(tmp_path: Path) -> None:
    """While the database is locked no session hears 250; once it is free, all ten are stored by at most two
    commits and each is answered 250 with its own inbox row."""
    config = make_config(tmp_path, storage={"busy_timeout": 10.0})
    async with Daemon(config) as daemon:
        daemon.worker.stop()  # only the SMTP side writes
        blocker = sqlite3.connect(config.storage.database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            sessions = [asyncio.create_task(_deliver(daemon.smtp_port, make_mail(message_id=f"m{n}@customer.example")))
                        for n in range(10)]
            await asyncio.sleep(1.5)
            assert not any(session.done() for session in sessions), "a 250 before the commit"
            before = daemon.db.intake.batches
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        answers = await asyncio.gather(*sessions)
        commits = daemon.db.intake.batches - before
    assert [code for code, _ in answers] == [250] * 10
    ids = sorted(int(message.rsplit(" ", 1)[1]) for _, message in answers)
    assert len(set(ids)) == 10
    assert sorted(await _stored(config.storage.database)) == sorted(f"m{n}@customer.example" for n in range(10))
    assert commits <= 2


async def test_a_shared_commit_keeps_to_the_backlog_limit(tmp_path: Path) -> None:
    """With room for three more mails, five sessions committed together get three 250s and two 451 4.3.0."""
    config = make_config(tmp_path, storage={"busy_timeout": 10.0}, inbox={"max_backlog": 3, "poll_interval": 60.0})
    async with Daemon(config) as daemon:
        daemon.worker.stop()
        blocker = sqlite3.connect(config.storage.database, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            sessions = [asyncio.create_task(_deliver(daemon.smtp_port, make_mail(message_id=f"b{n}@customer.example")))
                        for n in range(5)]
            await asyncio.sleep(1.0)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        answers = await asyncio.gather(*sessions)
    codes = sorted(code for code, _ in answers)
    assert codes == [250, 250, 250, 451, 451]
    assert all(message.startswith("4.3.0") for code, message in answers if code == 451)
    assert len(await _stored(config.storage.database)) == 3


async def test_a_failed_shared_commit_answers_every_session_451_and_stores_none(tmp_path: Path) -> None:
    """When the database stays locked past the busy timeout, every waiting session gets 451 4.3.0 and no mail is
    half-stored; the senders' retries are then accepted."""
    config = make_config(tmp_path, storage={"busy_timeout": 0.5})
    async with Daemon(config) as daemon:
        daemon.worker.stop()
        blocker = sqlite3.connect(config.storage.database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            answers = await asyncio.gather(*(_deliver(daemon.smtp_port, make_mail(message_id=f"f{n}@customer.example"))
                                             for n in range(4)))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert [code for code, _ in answers] == [451] * 4
        assert await _stored(config.storage.database) == []
        retried = await asyncio.gather(*(_deliver(daemon.smtp_port, make_mail(message_id=f"f{n}@customer.example"))
                                         for n in range(4)))
    assert [code for code, _ in retried] == [250] * 4
    assert len(await _stored(config.storage.database)) == 4


async def test_processing_goes_on_while_mail_streams_in(tmp_path: Path) -> None:
    """Accepting comes first while mail streams in, but processing is never starved: mails become tickets
    during a three-second stream, and all of them once it ends."""
    config = make_config(tmp_path)
    async with Daemon(config) as daemon:
        loop = asyncio.get_running_loop()
        stop = loop.time() + 3.0
        sent: list[int] = []

        async def stream(client_number: int) -> None:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, timeout=30) as client:
                n = 0
                while loop.time() < stop:
                    await client.sendmail("kunde@customer.example", [SUPPORT],
                                          make_mail(message_id=f"s{client_number}.{n}@customer.example"))
                    sent.append(1)
                    n += 1

        await asyncio.gather(stream(1), stream(2))
        with sqlite3.connect(config.storage.database) as conn:
            done_during = conn.execute("SELECT count(*) FROM inbox WHERE status = 'done'").fetchone()[0]
        from tests.helpers import settle
        await settle(daemon, timeout=120)
        with sqlite3.connect(config.storage.database) as conn:
            articles = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
    assert done_during >= 3
    assert articles == len(sent)
