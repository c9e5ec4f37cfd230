"""The delivery worker against real transports: a maildir on disk and an aiosmtpd sink on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.outbox.transports import MaildirTransport, SmtpTransport, Transport, make_transport
from mailticketd.outbox.transports.errors import TemporaryFailure
from mailticketd.outbox.transports.maildir import default_batch_sync
from mailticketd.outbox.worker import DeliveryWorker
from mailticketd.storage import database_for
from mailticketd.storage.outbox import OutboxRow
from tests.helpers import SUPPORT, free_port, make_config
from tests.sink import Sink


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FailureLog:
    """An ``on_failed`` callback that remembers its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[OutboxRow, str]] = []

    async def __call__(self, row: OutboxRow, error: str) -> None:
        self.calls.append((row, error))


def outgoing(rcpt: str, body: str = "Hallo.\n") -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"Support <{SUPPORT}>"
    message["To"] = rcpt
    message["Subject"] = "[MH#10000] Server down"
    message["Message-ID"] = "<n1@example.net>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(body)
    return message.as_bytes()


async def enqueue(db: Database, rcpt: str, *, now: datetime | None = None, body: str = "Hallo.\n") -> int:
    async with db.transaction() as store:
        return await store.outbox.enqueue(
            ticket_id=None, kind="acknowledgement", mail_from=SUPPORT, rcpt_to=rcpt,
            message_id="n1@example.net", raw=outgoing(rcpt, body), now=now,
        )


async def row_of(db: Database, outbox_id: int) -> OutboxRow:
    async with db.read() as store:
        row = await store.outbox.get(outbox_id)
    assert row is not None
    return row


def relay_config(tmp_path: Path, relay: str, **outbound: Any) -> Config:
    settings: dict[str, Any] = {"transport": "smtp", "relay": relay, "relay_timeout": 5.0,
                                "retry_delay": 60.0, "max_retry_delay": 3600.0}
    return make_config(tmp_path, outbound=settings | outbound)


async def test_maildir_writes_one_file_per_recipient(tmp_path: Path) -> None:
    """Two rows for two recipients become two files in new/, each starting with its Delivered-To."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        await enqueue(db, "anna@customer.example", body="Erste Zeile.\n.Punkt am Anfang.\n")
        await enqueue(db, "bert@customer.example", body="Erste Zeile.\n.Punkt am Anfang.\n")
        worker = DeliveryWorker(db, config, make_transport(config.outbound))
        assert await worker.drain() == 2
        async with db.read() as store:
            assert await store.outbox.counts() == {"queued": 0, "sent": 2, "failed": 0}
    maildir = config.outbound.maildir
    assert sorted(path.name for path in maildir.iterdir()) == ["cur", "new", "tmp"]
    assert list((maildir / "tmp").iterdir()) == []
    files = [path.read_bytes() for path in (maildir / "new").iterdir()]
    assert len(files) == 2
    for rcpt in ("anna@customer.example", "bert@customer.example"):
        (content,) = [data for data in files if data.startswith(f"Delivered-To: {rcpt}\r\n".encode())]
        assert content.split(b"\r\n")[1] == f"Return-Path: <{SUPPORT}>".encode()
        assert content.endswith(outgoing(rcpt, "Erste Zeile.\n.Punkt am Anfang.\n"))
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert parsed["Delivered-To"] == rcpt
        assert parsed.get_content().replace("\r\n", "\n") == "Erste Zeile.\n.Punkt am Anfang.\n"


async def test_a_maildir_removed_while_running_is_made_again_for_the_next_mail(tmp_path: Path) -> None:
    """When somebody removes the maildir between two mails, the second is still delivered at its first try."""
    config = make_config(tmp_path)
    maildir = config.outbound.maildir
    async with database_for(config.storage) as db:
        worker = DeliveryWorker(db, config, make_transport(config.outbound))
        await enqueue(db, "anna@customer.example")
        assert await worker.drain() == 1
        shutil.rmtree(maildir)
        await enqueue(db, "bert@customer.example")
        assert await worker.drain() == 1
        async with db.read() as store:
            assert await store.outbox.counts() == {"queued": 0, "sent": 2, "failed": 0}
    [content] = [path.read_bytes() for path in (maildir / "new").iterdir()]
    assert content.startswith(b"Delivered-To: bert@customer.example\r\n")


class DiesAfterSend:
    """A real transport whose process dies right after the mail was written, before anything is marked."""

    def __init__(self, inner: MaildirTransport) -> None:
        self.inner = inner

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        await self.inner.send(mail_from, rcpt_to, raw, delivery_id=delivery_id)
        raise SystemExit("killed")


@pytest.mark.sqlite_only
async def test_maildir_repeat_after_a_crash_replaces_the_copy(tmp_path: Path) -> None:
    """A mail written to the maildir by a run that died before marking it is there once after the next run sends it."""
    config = make_config(tmp_path)
    maildir = config.outbound.maildir
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example")
        try:
            await DeliveryWorker(db, config, DiesAfterSend(MaildirTransport(maildir))).drain()
        except SystemExit:
            pass
        assert (await row_of(db, outbox_id)).status == "queued"
        assert await DeliveryWorker(db, config, MaildirTransport(maildir)).drain() == 1
        assert (await row_of(db, outbox_id)).status == "sent"
    assert len(list((maildir / "new").iterdir())) == 1
    assert list((maildir / "tmp").iterdir()) == []


class DiesAfterBatch:
    """A real maildir whose process dies right after a batch of mails was written, before anything is marked."""

    def __init__(self, inner: MaildirTransport) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        await self.inner.send(mail_from, rcpt_to, raw, delivery_id=delivery_id)

    async def send_batch(self, mails: list[tuple[str, str, bytes, str]]) -> list[Exception | None]:
        self.batches.append(len(mails))
        await self.inner.send_batch(mails)
        raise SystemExit("killed")


async def test_a_claim_for_the_maildir_holds_a_few_megabytes_of_mail_beyond_its_first(tmp_path: Path) -> None:
    """However many big mails are due (operator notices quoting what customers wrote), one claim reads at most
    ``max_bytes`` of them into memory (its first mail whatever its size); the others stay queued and unleased for the
    next claims, and no row is claimed twice."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        big = [await enqueue(db, f"kunde{n}@customer.example", body="x" * 300_000 + "\n") for n in range(3)]
        small = await enqueue(db, "klein@customer.example")
        now = utc_now()
        lease = now + timedelta(minutes=15)
        async with db.transaction() as store:
            first = await store.outbox.claim_due(now, lease, limit=128, max_bytes=700_000)
        async with db.transaction() as store:
            second = await store.outbox.claim_due(now, lease, limit=128, max_bytes=1)
        async with db.transaction() as store:
            third = await store.outbox.claim_due(now, lease, limit=128, max_bytes=700_000)
            nothing = await store.outbox.claim_due(now, lease, limit=128, max_bytes=700_000)  # all leased now
    assert [row.id for row in first] == big[:2]  # the third would pass 700 KB
    assert [row.id for row in second] == big[2:]  # the first row always comes, whatever its size
    assert [row.id for row in third] == [small]
    assert nothing == []
    assert all(row.raw and len(row.raw) > 300_000 for row in first + second)


@pytest.mark.sqlite_only
async def test_a_crash_after_a_maildir_batch_leaves_each_mail_there_once(tmp_path: Path) -> None:
    """Mails written together to the maildir by a run that died before marking them are each there once after the
    next run, and every row ends sent."""
    config = make_config(tmp_path)
    maildir = config.outbound.maildir
    recipients = [f"kunde{n}@customer.example" for n in range(6)]
    async with database_for(config.storage) as db:
        ids = [await enqueue(db, rcpt) for rcpt in recipients]
        dying = DiesAfterBatch(MaildirTransport(maildir))
        with pytest.raises(SystemExit):
            await DeliveryWorker(db, config, dying).drain()
        assert dying.batches == [6]  # written together, in one claim
        assert {(await row_of(db, outbox_id)).status for outbox_id in ids} == {"queued"}
        assert len(list((maildir / "new").iterdir())) == 6
        assert await DeliveryWorker(db, config, MaildirTransport(maildir)).drain() == 6
        assert {(await row_of(db, outbox_id)).status for outbox_id in ids} == {"sent"}
    files = [path.read_bytes() for path in (maildir / "new").iterdir()]
    assert sorted(data.split(b"\r\n", 1)[0].decode() for data in files) == sorted(
        f"Delivered-To: {rcpt}" for rcpt in recipients)
    assert list((maildir / "tmp").iterdir()) == []


@pytest.mark.sqlite_only  # the second run takes over the first one's leases: one daemon per SQLite database
async def test_big_mails_go_to_the_maildir_a_few_megabytes_at_a_time(tmp_path: Path) -> None:
    """Three operator notices of 3 MB each (quoting long mails) are not claimed and written together, as small ones
    are: the first claim takes two (BATCH_BYTES, 8 MB), the next the third; all of them arrive."""
    config = make_config(tmp_path)
    maildir = config.outbound.maildir
    async with database_for(config.storage) as db:
        ids = [await enqueue(db, f"kunde{n}@customer.example", body="x" * 3_000_000 + "\n") for n in range(3)]
        dying = DiesAfterBatch(MaildirTransport(maildir))
        with pytest.raises(SystemExit):
            await DeliveryWorker(db, config, dying).drain()
        assert dying.batches == [2]
        assert await DeliveryWorker(db, config, MaildirTransport(maildir)).drain() == 3
        assert {(await row_of(db, outbox_id)).status for outbox_id in ids} == {"sent"}
    assert len(list((maildir / "new").iterdir())) == 3


async def test_one_bad_recipient_in_a_maildir_batch_fails_alone(tmp_path: Path) -> None:
    """Among mails written together, one whose recipient holds a line break fails for good and operators hear of
    it; the others are delivered."""
    config = make_config(tmp_path)
    failures = FailureLog()
    async with database_for(config.storage) as db:
        good = [await enqueue(db, f"kunde{n}@customer.example") for n in range(3)]
        async with db.transaction() as store:
            bad = await store.outbox.enqueue(
                ticket_id=None, kind="acknowledgement", mail_from=SUPPORT,
                rcpt_to="evil@customer.example\r\nBcc: all@example.org", message_id="n1@example.net",
                raw=outgoing("evil@customer.example"))
        good.append(await enqueue(db, "kunde9@customer.example"))
        worker = DeliveryWorker(db, config, make_transport(config.outbound), on_failed=failures)
        assert await worker.drain() == 5
        assert {(await row_of(db, outbox_id)).status for outbox_id in good} == {"sent"}
        failed = await row_of(db, bad)
    assert failed.status == "failed" and failed.last_error is not None and "control character" in failed.last_error
    assert [row.id for row, _ in failures.calls] == [bad]
    assert len(list((config.outbound.maildir / "new").iterdir())) == 4


async def test_a_maildir_batch_the_disk_cannot_sync_is_kept_and_written_again(tmp_path: Path) -> None:
    """When the disk fails to make a batch's files durable, none of them appears in new/ (a reader never sees a
    mail that could still be lost), nothing is left in tmp/, every row stays queued, and the next try delivers
    each mail once."""
    config = make_config(tmp_path)
    maildir = config.outbound.maildir
    recipients = [f"kunde{n}@customer.example" for n in range(4)]

    @contextlib.contextmanager
    def failing_disk(folder: str) -> Iterator[Callable[[], None]]:
        def sync() -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO), folder)
        yield sync

    async with database_for(config.storage) as db:
        ids = [await enqueue(db, rcpt) for rcpt in recipients]
        clock = FakeClock()
        await DeliveryWorker(db, config, MaildirTransport(maildir, batch_sync=failing_disk), clock=clock).drain()
        rows = [await row_of(db, outbox_id) for outbox_id in ids]
        assert {row.status for row in rows} == {"queued"}
        assert all(row.last_error and "Input/output error" in row.last_error for row in rows)
        assert list((maildir / "new").iterdir()) == [] and list((maildir / "tmp").iterdir()) == []
        clock.advance(config.outbound.max_retry_delay)  # due again
        assert await DeliveryWorker(db, config, MaildirTransport(maildir), clock=clock).drain() == 4
        assert {(await row_of(db, outbox_id)).status for outbox_id in ids} == {"sent"}
    assert sorted(path.read_bytes().split(b"\r\n", 1)[0].decode() for path in (maildir / "new").iterdir()) == sorted(
        f"Delivered-To: {rcpt}" for rcpt in recipients)


@pytest.mark.parametrize("batch_sync", [default_batch_sync(), None], ids=["syncfs", "each-file"])
async def test_a_mail_whose_rename_fails_fails_alone_in_its_batch(tmp_path: Path, batch_sync: Any) -> None:
    """A mail of a batch that cannot be moved into new/ (a folder is in its place) fails alone, with nothing left
    in tmp/; the others of the batch are delivered, whether the batch is synced at once or file by file."""
    transport = MaildirTransport(tmp_path / "maildir", batch_sync=batch_sync)
    mails = [(SUPPORT, f"kunde{n}@customer.example", outgoing(f"kunde{n}@customer.example"), f"{n}.n1@example.net")
             for n in range(3)]
    blocked = tmp_path / "maildir" / "new" / transport.file_name("1.n1@example.net")
    (blocked / "inside").mkdir(parents=True)
    results = await transport.send_batch(mails)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], TemporaryFailure)
    assert sorted(path.name for path in (tmp_path / "maildir" / "new").iterdir()) == sorted(
        transport.file_name(f"{n}.n1@example.net") for n in range(3))  # two mails, and the folder in the way
    assert blocked.is_dir() and list((tmp_path / "maildir" / "tmp").iterdir()) == []


class DiesAtTheSecondSend:
    """A relay whose process dies right after it has taken the second mail, before anything more is marked."""

    def __init__(self, relay: Transport) -> None:
        self.relay = relay
        self.sent = 0

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        await self.relay.send(mail_from, rcpt_to, raw, delivery_id=delivery_id)
        self.sent += 1
        if self.sent == 2:
            raise SystemExit("killed")


async def test_a_relay_gets_one_mail_a_claim_so_a_crash_repeats_at_most_one(tmp_path: Path) -> None:
    """Towards a relay every mail is marked sent before the next one leaves: a run that dies after a send leaves
    only that one mail unmarked."""
    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            ids = [await enqueue(db, f"kunde{n}@customer.example") for n in range(3)]
            with pytest.raises(SystemExit):
                await DeliveryWorker(db, config, DiesAtTheSecondSend(make_transport(config.outbound))).drain()
            statuses = [(await row_of(db, outbox_id)).status for outbox_id in ids]
    assert len(sink.received) == 2
    assert statuses == ["sent", "queued", "queued"]


async def test_maildir_overwrites_a_half_file_a_crash_left_in_tmp(tmp_path: Path) -> None:
    """A half-written file of the same delivery in tmp/ is replaced, and the whole mail lands in new/."""
    transport = MaildirTransport(tmp_path / "maildir")
    (tmp_path / "maildir" / "tmp").mkdir(parents=True)
    (tmp_path / "maildir" / "tmp" / transport.file_name("7.n1@example.net.anna@customer.example")).write_bytes(b"From: Supp")
    raw = outgoing("anna@customer.example")
    await transport.send(SUPPORT, "anna@customer.example", raw, delivery_id="7.n1@example.net.anna@customer.example")
    assert list((tmp_path / "maildir" / "tmp").iterdir()) == []
    (written,) = list((tmp_path / "maildir" / "new").iterdir())
    assert written.read_bytes().endswith(raw)


async def test_make_transport_follows_the_config(tmp_path: Path) -> None:
    """The embedded default delivers into the maildir; transport = "smtp" talks to the relay."""
    assert isinstance(make_transport(make_config(tmp_path).outbound), MaildirTransport)
    relay = make_transport(relay_config(tmp_path, "[::1]:2500", relay_security="tls").outbound)
    assert isinstance(relay, SmtpTransport)
    assert (relay.host, relay.port, relay.security) == ("::1", 2500, "tls")


async def test_relay_receives_the_mail_with_its_envelope(tmp_path: Path) -> None:
    """The relay gets the raw mail from the support address to the row's recipient, and the row is sent."""
    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example")
            worker = DeliveryWorker(db, config, make_transport(config.outbound))
            with structlog.testing.capture_logs() as logs:
                assert await worker.process_next() is True
            row = await row_of(db, outbox_id)
    assert len(sink.received) == 1
    received = sink.received[0]
    assert (received.mail_from, received.rcpt_tos) == (SUPPORT, ("anna@customer.example",))
    assert received.raw.rstrip(b"\r\n") == outgoing("anna@customer.example").rstrip(b"\r\n")
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None
    (sent,) = [entry for entry in logs if entry["event"] == "outbox.sent"]
    assert sent | {"log_level": None} == {
        "event": "outbox.sent", "log_level": None, "outbox_id": outbox_id, "message_id": "n1@example.net",
        "rcpt_to": "anna@customer.example", "kind": "acknowledgement", "ticket_id": None,
    }


async def test_relay_down_then_up_delivers_exactly_once(tmp_path: Path) -> None:
    """A refused connection queues the row for later; once the relay is up and the time has come it goes out once."""
    clock = FakeClock()
    sink = Sink(free_port())
    config = relay_config(tmp_path, sink.relay)
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example", now=clock())
        worker = DeliveryWorker(db, config, make_transport(config.outbound), clock=clock)
        assert await worker.process_next() is True
        row = await row_of(db, outbox_id)
        assert (row.status, row.attempts) == ("queued", 1)
        assert datetime.fromisoformat(row.next_attempt_at) == clock.now + timedelta(seconds=60)
        assert row.last_error is not None and "refused" in row.last_error
        async with sink:
            assert await worker.drain() == 0  # not due yet
            clock.advance(61)
            assert await worker.drain() == 1
            clock.advance(100_000)
            assert await worker.drain() == 0
        row = await row_of(db, outbox_id)
    assert len(sink.received) == 1
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


async def test_back_off_doubles_up_to_the_cap(tmp_path: Path) -> None:
    """Each temporary failure doubles the wait, which never exceeds max_retry_delay."""
    clock = FakeClock()
    config = relay_config(tmp_path, f"127.0.0.1:{free_port()}", retry_delay=60.0, max_retry_delay=200.0)
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example", now=clock())
        worker = DeliveryWorker(db, config, make_transport(config.outbound), clock=clock)
        waits = []
        for _ in range(4):
            assert await worker.drain() == 1
            row = await row_of(db, outbox_id)
            wait = datetime.fromisoformat(row.next_attempt_at) - clock.now
            waits.append(wait.total_seconds())
            clock.advance(wait.total_seconds())
    assert waits == [60.0, 120.0, 200.0, 200.0]
    assert (row.status, row.attempts) == ("queued", 4)


async def test_temporary_data_refusal_is_retried(tmp_path: Path) -> None:
    """A 451 to DATA keeps the row queued with the answer; the next try after the delay sends it."""
    clock = FakeClock()
    async with Sink() as sink:
        sink.data_reply = "451 4.3.0 Try again later"
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example", now=clock())
            failures = FailureLog()
            worker = DeliveryWorker(db, config, make_transport(config.outbound), failures, clock=clock)
            assert await worker.drain() == 1
            row = await row_of(db, outbox_id)
            assert (row.status, row.attempts, row.last_error) == ("queued", 1, "451 4.3.0 Try again later")
            sink.data_reply = None
            clock.advance(60)
            assert await worker.drain() == 1
            row = await row_of(db, outbox_id)
    assert row.status == "sent"
    assert len(sink.received) == 1
    assert failures.calls == []


async def test_permanent_rcpt_refusal_fails_at_once(tmp_path: Path) -> None:
    """A 550 to RCPT marks the row failed with the server's answer, calls on_failed once, and never retries."""
    clock = FakeClock()
    async with Sink() as sink:
        sink.rcpt_reply = "550 5.1.1 <anna@customer.example>: Recipient address rejected"
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example", now=clock())
            failures = FailureLog()
            worker = DeliveryWorker(db, config, make_transport(config.outbound), failures, clock=clock)
            assert await worker.drain() == 1
            sink.rcpt_reply = None
            clock.advance(10 * 86400)
            assert await worker.drain() == 0
            row = await row_of(db, outbox_id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error == "550 5.1.1 <anna@customer.example>: Recipient address rejected"
    assert len(failures.calls) == 1
    failed, error = failures.calls[0]
    assert (failed.id, failed.status, failed.rcpt_to) == (outbox_id, "failed", "anna@customer.example")
    assert error == row.last_error
    assert sink.received == []


async def test_permanent_data_refusal_fails_at_once(tmp_path: Path) -> None:
    """A 554 after DATA fails the row just as a refused recipient does."""
    async with Sink() as sink:
        sink.data_reply = "554 5.7.1 Message rejected as spam"
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example")
            failures = FailureLog()
            worker = DeliveryWorker(db, config, make_transport(config.outbound), failures)
            assert await worker.drain() == 1
            row = await row_of(db, outbox_id)
    assert (row.status, row.last_error) == ("failed", "554 5.7.1 Message rejected as spam")
    assert [error for _, error in failures.calls] == ["554 5.7.1 Message rejected as spam"]


async def test_temporary_failure_past_max_lifetime_fails(tmp_path: Path) -> None:
    """Once a row is older than max_lifetime, the next temporary failure fails it and tells on_failed."""
    clock = FakeClock()
    config = relay_config(tmp_path, f"127.0.0.1:{free_port()}", max_lifetime=3600.0)
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example", now=clock())
        failures = FailureLog()
        worker = DeliveryWorker(db, config, make_transport(config.outbound), failures, clock=clock)
        assert await worker.drain() == 1
        assert (await row_of(db, outbox_id)).status == "queued"
        assert failures.calls == []
        clock.advance(3600)
        assert await worker.drain() == 1
        row = await row_of(db, outbox_id)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error is not None and "refused" in row.last_error
    assert [(failed.id, error) for failed, error in failures.calls] == [(outbox_id, row.last_error)]


@pytest.mark.sqlite_only
async def test_restart_resumes_the_queue(tmp_path: Path) -> None:
    """A new worker on the reopened database sends what was queued before, and nothing twice."""
    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            first = await enqueue(db, "anna@customer.example")
            second = await enqueue(db, "bert@customer.example")
            assert await DeliveryWorker(db, config, make_transport(config.outbound)).process_next()
        async with database_for(config.storage) as db:
            assert await DeliveryWorker(db, config, make_transport(config.outbound)).drain() == 1
            statuses = [(await row_of(db, outbox_id)).status for outbox_id in (first, second)]
    assert [received.rcpt_tos for received in sink.received] == [("anna@customer.example",),
                                                                  ("bert@customer.example",)]
    assert statuses == ["sent", "sent"]


@pytest.mark.sqlite_only
async def test_a_lease_left_by_a_crash_ends_at_the_next_start(tmp_path: Path) -> None:
    """A row claimed by a run that died before marking it is sent by the next run, once."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example")
        async with db.transaction() as store:
            assert await store.outbox.claim_next(utc_now(), utc_now() + timedelta(hours=1)) is not None
        async with db.transaction() as store:
            assert await store.outbox.claim_next(utc_now(), utc_now() + timedelta(hours=1)) is None
        worker = DeliveryWorker(db, config, make_transport(config.outbound))
        assert await worker.drain() == 1
        assert await worker.drain() == 0
        assert (await row_of(db, outbox_id)).status == "sent"
    assert len(list((config.outbound.maildir / "new").iterdir())) == 1


async def test_a_failing_on_failed_does_not_stop_the_worker(tmp_path: Path) -> None:
    """An exception in on_failed is logged after the failure is committed, and the next row still goes out."""
    async def broken(row: OutboxRow, error: str) -> None:
        raise RuntimeError("operator notification failed")

    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            doomed = await enqueue(db, "nobody@customer.example")
            fine = await enqueue(db, "anna@customer.example")
            worker = DeliveryWorker(db, config, make_transport(config.outbound), broken)
            sink.rcpt_reply = "550 5.1.1 No such user"
            with structlog.testing.capture_logs() as logs:
                assert await worker.process_next()
            sink.rcpt_reply = None
            assert await worker.process_next()
            statuses = [(await row_of(db, outbox_id)).status for outbox_id in (doomed, fine)]
    assert statuses == ["failed", "sent"]
    assert [entry["event"] for entry in logs] == ["outbox.failed", "outbox.on_failed_error"]


async def test_relay_login_when_a_username_is_set(tmp_path: Path) -> None:
    """With relay_username set, the worker logs in to a relay that requires AUTH before sending."""
    async with Sink(credentials=("mailticketd", "s3cret")) as sink:
        config = relay_config(tmp_path, sink.relay, relay_security="none",
                              relay_username="mailticketd", relay_password="s3cret")
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example")
            assert await DeliveryWorker(db, config, make_transport(config.outbound)).drain() == 1
            row = await row_of(db, outbox_id)
    assert row.status == "sent"
    assert sink.logins == ["mailticketd"]
    assert len(sink.received) == 1


async def test_required_starttls_is_never_skipped(tmp_path: Path) -> None:
    """relay_security = "starttls" against a relay without STARTTLS sends nothing in the clear and retries."""
    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay, relay_security="starttls")
        async with database_for(config.storage) as db:
            outbox_id = await enqueue(db, "anna@customer.example")
            assert await DeliveryWorker(db, config, make_transport(config.outbound)).drain() == 1
            row = await row_of(db, outbox_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error is not None and "STARTTLS" in row.last_error
    assert sink.received == []


class WritingTransport:
    """A transport that writes to the database while it sends, as another task would."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sent: list[str] = []

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        async with asyncio.timeout(5):
            async with self.db.transaction() as store:
                await store.outbox.counts()
        self.sent.append(rcpt_to)


async def test_the_database_is_free_while_sending(tmp_path: Path) -> None:
    """The worker releases the database before the transport runs, so other writers are never blocked by a send."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        outbox_id = await enqueue(db, "anna@customer.example")
        transport = WritingTransport(db)
        assert await DeliveryWorker(db, config, transport).drain() == 1
        row = await row_of(db, outbox_id)
    assert transport.sent == ["anna@customer.example"]
    assert row.status == "sent"


async def test_run_sends_when_woken_and_stops(tmp_path: Path) -> None:
    """The running worker sends a row queued after it started once woken, and returns from run() on stop()."""
    config = make_config(tmp_path, outbound={"poll_interval": 30.0})
    async with database_for(config.storage) as db:
        worker = DeliveryWorker(db, config, make_transport(config.outbound))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        outbox_id = await enqueue(db, "anna@customer.example")
        worker.wake()
        async with asyncio.timeout(5):
            while (await row_of(db, outbox_id)).status != "sent":
                await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(task, 5)
    assert len(list((config.outbound.maildir / "new").iterdir())) == 1


async def test_list_and_counts_show_the_queue(tmp_path: Path) -> None:
    """The repository lists rows by status without their bytes and counts every status."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        queued = await enqueue(db, "anna@customer.example")
        failed = await enqueue(db, "bert@customer.example")
        async with db.transaction() as store:
            await store.outbox.mark_failed(failed, "550 5.1.1 No such user")
            rows = await store.outbox.list(("queued", "failed"))
            counts = await store.outbox.counts()
            raw = await store.outbox.raw(queued)
    assert [(row.id, row.status) for row in rows] == [(queued, "queued"), (failed, "failed")]
    assert all(row.raw is None for row in rows)
    assert counts == {"queued": 1, "sent": 0, "failed": 1}
    assert raw == outgoing("anna@customer.example")


async def test_count_recent_counts_automatic_mails_to_one_address(tmp_path: Path) -> None:
    """count_recent counts an address's rows of the given kinds since a moment, ignoring case and other kinds."""
    config = make_config(tmp_path)
    now = utc_now()
    async with database_for(config.storage) as db:
        async with db.transaction() as store:
            for kind, rcpt, age in (("ack", "Anna@Customer.example", 10), ("notice", "anna@customer.example", 30),
                                    ("ack", "anna@customer.example", 7200), ("reply", "anna@customer.example", 5),
                                    ("ack", "bert@customer.example", 5)):
                await store.outbox.enqueue(ticket_id=None, kind=kind, mail_from=SUPPORT, rcpt_to=rcpt,
                                           message_id="n1@example.net", raw=b"x", now=now - timedelta(seconds=age))
            count = await store.outbox.count_recent("anna@customer.example", ("ack", "notice"),
                                                    now - timedelta(hours=1))
    assert count == 2


async def test_mails_claimed_for_the_maildir_go_to_a_relay_one_a_claim_after_a_reload(tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """When a reload switches from the maildir to a relay while a batch is claimed, the relay still gets one mail
    at a time, each marked before the next: a crash then repeats at most one."""
    import mailticketd.outbox.worker as worker_module

    monkeypatch.setattr(worker_module, "BATCH", 3)
    async with Sink() as sink:
        config = relay_config(tmp_path, sink.relay)
        async with database_for(config.storage) as db:
            ids = [await enqueue(db, f"kunde{n}@customer.example") for n in range(6)]
            worker = DeliveryWorker(db, config, MaildirTransport(tmp_path / "maildir"))
            assert await worker.process_next() is True  # three written, marked, and the next three claimed
            worker.transport = DiesAtTheSecondSend(make_transport(config.outbound))  # what a reload does
            with pytest.raises(SystemExit):
                await worker.drain()
            statuses = [(await row_of(db, outbox_id)).status for outbox_id in ids]
    assert len(sink.received) == 2
    assert statuses == ["sent", "sent", "sent", "sent", "queued", "queued"]
