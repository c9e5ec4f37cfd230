"""The SMTP side: recipient policy, limits, and 250 only after the inbox commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosmtplib
import pytest

from mailticketd.app import Daemon
from tests.helpers import SUPPORT, make_config, make_mail, send


async def refused_data(port: int, raw: bytes | None = None) -> aiosmtplib.SMTPDataError:
    """Send a mail whose DATA the daemon refuses; the error it answered with."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
        await client.mail("kunde@customer.example")
        await client.rcpt(SUPPORT)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.data(raw if raw is not None else make_mail())
    return refused.value


@pytest.mark.sqlite_only  # another connection to the SQLite file
async def test_mail_for_a_support_address_is_accepted_and_stored(daemon: Daemon) -> None:
    """A 250 means the raw mail and its envelope are already in the inbox table."""
    raw = make_mail()
    reply = await send(daemon.smtp_port, raw, mail_from="kunde@customer.example")
    assert reply.startswith("2.0.0 Ok: queued as ")
    inbox_id = int(reply.rsplit(" ", 1)[1])
    with sqlite3.connect(daemon.config.storage.database) as conn:
        stored, mail_from, rcpts = conn.execute(
            "SELECT r.raw, i.mail_from, i.rcpt_tos FROM inbox i JOIN inbox_raw r ON r.inbox_id = i.id WHERE i.id = ?",
            (inbox_id,)).fetchone()
    assert stored.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert mail_from == "kunde@customer.example"
    assert SUPPORT in rcpts


async def test_unknown_recipient_is_refused_550_so_it_is_never_a_relay(daemon: Daemon) -> None:
    """RCPT to any address but ours gets 550 5.1.1 naming the address."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
        await client.mail("kunde@customer.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("victim@elsewhere.example")
    assert refused.value.code == 550
    assert refused.value.message.startswith("5.1.1 <victim@elsewhere.example>")


async def test_sub_addresses_and_case_of_a_support_address_are_accepted(daemon: Daemon) -> None:
    """``support+token@`` (reply tokens) and ``Support@EXAMPLE.net`` reach the desk; ``supportx@`` does not."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
        await client.mail("kunde@customer.example")
        code, _ = await client.rcpt("support+abc.def@example.net")
        assert code == 250
        code, _ = await client.rcpt("Support@EXAMPLE.net")
        assert code == 250
        with pytest.raises(aiosmtplib.SMTPRecipientRefused):
            await client.rcpt("supportx@example.net")


async def test_too_many_recipients_are_deferred_with_452(tmp_path: Path) -> None:
    """Past ``max_recipients`` a RCPT gets 452 4.5.3, so the client sends the rest later."""
    async with Daemon(make_config(tmp_path, smtp={"max_recipients": 2})) as daemon:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
            await client.mail("kunde@customer.example")
            await client.rcpt(SUPPORT)
            await client.rcpt("helpdesk@example.net")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("support+x@example.net")
    assert refused.value.code == 452
    assert refused.value.message.startswith("4.5.3")


async def test_oversized_mail_is_refused_552_after_data(tmp_path: Path) -> None:
    """A mail over ``max_message_size`` gets 552 5.3.4 with the limit, and nothing is stored."""
    async with Daemon(make_config(tmp_path, smtp={"max_message_size": 4000})) as daemon:
        raw = make_mail(body="x" * 6000)
        refused = await refused_data(daemon.smtp_port, raw)
        assert refused.code == 552
        assert refused.message.startswith("5.3.4") and "4000" in refused.message
        async with daemon.db.read() as store:
            assert await store.inbox.list(("pending", "done", "failed")) == []


async def test_oversized_mail_announced_with_size_is_refused_at_mail(tmp_path: Path) -> None:
    """``MAIL FROM:<…> SIZE=`` over the limit is refused before any data is sent."""
    async with Daemon(make_config(tmp_path, smtp={"max_message_size": 4000})) as daemon:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
            await client.ehlo()
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await client.mail("kunde@customer.example", options=["SIZE=50000"])
    assert refused.value.code == 552
    assert refused.value.message.startswith("5.3.4")


async def test_long_lines_from_real_clients_are_accepted(daemon: Daemon) -> None:
    """A 1500-byte line (as some mail clients send) is stored, not refused as RFC 5321 would allow."""
    reply = await send(daemon.smtp_port, make_mail(body="y" * 1500))
    assert reply.startswith("2.0.0")


@pytest.mark.sqlite_only  # another connection to the SQLite file
async def test_read_only_database_answers_451_and_the_mail_arrives_after_the_fix(tmp_path: Path) -> None:
    """When SQLite must treat the database as read-only, DATA gets 451 4.3.0; once fixed, the resent mail is kept."""
    config = make_config(tmp_path)
    async with Daemon(config):
        pass  # create and migrate the database, then close it cleanly
    _set_write_version(config.storage.database, 3)  # a write format newer than ours: read-only to SQLite
    raw = make_mail(subject="Bitte prüfen")
    async with Daemon(config) as daemon:
        deferred = await refused_data(daemon.smtp_port, raw)
    assert deferred.code == 451
    assert deferred.message.startswith("4.3.0")

    _set_write_version(config.storage.database, 2)
    async with Daemon(config) as daemon:
        assert (await send(daemon.smtp_port, raw)).startswith("2.0.0")
        from tests.helpers import settle
        await settle(daemon)
        async with daemon.db.read() as store:
            assert [t.subject for t in await store.tickets.list()] == ["Bitte prüfen"]


@pytest.mark.sqlite_only  # another connection to the SQLite file
async def test_mail_another_connection_queued_counts_towards_the_backlog(tmp_path: Path) -> None:
    """The SMTP side keeps its count of waiting mail between its commits; a mail queued meanwhile by the web form
    (the pipeline's connection) or by another process still counts: with ``max_backlog`` reached, the next 451."""
    config = make_config(tmp_path, inbox={"max_backlog": 3, "poll_interval": 60.0})
    async with Daemon(config) as daemon:
        daemon.worker.stop()  # nothing is processed: the backlog only grows
        await asyncio.sleep(0)
        assert (await send(daemon.smtp_port, make_mail())).startswith("2.0.0")
        async with daemon.db.transaction() as store:  # what the web form does with a customer's new ticket
            await store.inbox.add(peer="web 127.0.0.1", mail_from="kunde@customer.example", rcpt_tos=[SUPPORT],
                                  message_id=None, raw=make_mail())
        other = sqlite3.connect(config.storage.database, isolation_level=None)  # the CLI, say
        try:
            other.execute("INSERT INTO inbox (received_at, mail_from, rcpt_tos, size) VALUES (?, ?, ?, 0)",
                          ("2026-12-01T00:00:00+00:00", "kunde@customer.example", f'["{SUPPORT}"]'))
        finally:
            other.close()
        deferred = await refused_data(daemon.smtp_port)
    assert deferred.code == 451


@pytest.mark.sqlite_only  # another connection to the SQLite file
async def test_other_sessions_are_answered_while_a_commit_waits_for_another_process(tmp_path: Path) -> None:
    """A mail's commit waits for a lock another process holds in the intake's thread, never in the event loop's: the
    other sessions are answered meanwhile, and the mail is stored once the lock is free."""
    config = make_config(tmp_path, storage={"busy_timeout": 20.0})  # the test lets go of the lock long before
    async with Daemon(config) as daemon:
        daemon.worker.stop()  # the workers' transactions would wait for the lock too, first in line
        daemon.delivery.stop()
        await asyncio.sleep(0)
        blocker = sqlite3.connect(config.storage.database, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # the staff CLI, say, in a long transaction
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as first:
                await first.mail("kunde@customer.example")
                await first.rcpt(SUPPORT)
                storing = asyncio.create_task(first.data(make_mail()))
                while not daemon.db.intake.writing and not storing.done():  # until its batch is being written
                    await asyncio.sleep(0.01)
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as second:
                    code, _ = await second.noop()
                assert code == 250
                assert not storing.done()
                blocker.execute("ROLLBACK")
                response = await storing
        finally:
            blocker.close()
        async with daemon.db.read() as store:
            stored = await store.inbox.list(("pending", "done", "failed"))
    assert response.code == 250
    assert len(stored) == 1


@pytest.mark.sqlite_only  # another connection to the SQLite file
async def test_locked_database_answers_451_instead_of_hanging(tmp_path: Path) -> None:
    """If another process holds the write lock past the busy timeout, DATA gets 451 4.3.0."""
    config = make_config(tmp_path, storage={"busy_timeout": 0.3})
    async with Daemon(config) as daemon:
        blocker = sqlite3.connect(config.storage.database, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            deferred = await refused_data(daemon.smtp_port)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert deferred.code == 451
        assert (await send(daemon.smtp_port, make_mail())).startswith("2.0.0")


async def test_full_backlog_answers_451(tmp_path: Path) -> None:
    """With ``max_backlog`` mails waiting, the next one gets 451 4.3.0 so the sender retries."""
    config = make_config(tmp_path, inbox={"max_backlog": 1, "poll_interval": 60.0})
    async with Daemon(config) as daemon:
        daemon.worker.stop()  # nothing is processed: the backlog only grows
        await asyncio.sleep(0)
        assert (await send(daemon.smtp_port, make_mail())).startswith("2.0.0")
        deferred = await refused_data(daemon.smtp_port)
    assert deferred.code == 451
    assert "try again later" in deferred.message


async def test_connections_over_the_limit_get_421(tmp_path: Path) -> None:
    """Past ``max_connections`` open sessions, a new connection is told 421 4.3.2 and closed."""
    async with Daemon(make_config(tmp_path, smtp={"max_connections": 1})) as daemon:
        first = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port)
        await first.connect()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
            greeting = await reader.readline()
            writer.close()
        finally:
            await first.quit()
    assert greeting.startswith(b"421 4.3.2")


def _set_write_version(database: Path, version: int) -> None:
    with database.open("r+b") as handle:
        handle.seek(18)
        handle.write(bytes([version]))


async def test_every_refusal_of_a_bad_command_carries_an_enhanced_code_and_a_sentence(daemon: Daemon) -> None:
    """A client's mistakes (an over-long RCPT line, an unknown verb, an empty line, DATA before MAIL, a second
    MAIL, a bad argument) are each answered with an enhanced status code, so a sender's log says what went wrong,
    and the session goes on to deliver its mail."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
    try:
        await reader.readline()
        writer.write(b"EHLO client.example\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        answers = {}
        for name, command in (("long-rcpt", b"RCPT TO:<" + b"a" * 600 + b"@example.net>"),
                              ("unknown", b"FROB"), ("empty", b""), ("data-first", b"DATA"),
                              ("mail", f"MAIL FROM:<kunde@customer.example>".encode()),
                              ("second-mail", b"MAIL FROM:<other@customer.example>"), ("helo-arg", b"HELO"),
                              ("rcpt", f"RCPT TO:<{SUPPORT}>".encode()), ("data", b"DATA")):
            writer.write(command + b"\r\n")
            answers[name] = (await reader.readline()).decode()
        writer.write(make_mail(subject="After the mistakes") + b"\r\n.\r\n")
        answers["accepted"] = (await reader.readline()).decode()
    finally:
        writer.close()
    for name in ("long-rcpt", "unknown", "empty", "data-first", "second-mail", "helo-arg"):
        code, enhanced, sentence = answers[name].split(" ", 2)
        assert code[0] == "5" and enhanced[0] == "5" and enhanced.count(".") == 2, (name, answers[name])
        assert len(sentence.strip()) > 8, (name, answers[name])
    assert answers["long-rcpt"].startswith("500 5.5.2 "), answers
    assert answers["unknown"].startswith("500 5.5.1 "), answers
    assert answers["accepted"].startswith("250 2.0.0"), answers
