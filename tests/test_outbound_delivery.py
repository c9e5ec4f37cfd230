"""Outgoing mail of the running daemon: relay down and up, refusals, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailticketd.app import Daemon
from mailticketd.storage import database_for
from tests.helpers import free_port, make_config, make_mail, send, settle
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.sink import Sink

CUSTOMER = "anna@customer.example"


def relay_config(tmp_path: Path, port: int):
    return make_config(tmp_path, outbound={"transport": "smtp", "relay": f"127.0.0.1:{port}",
                                           "relay_security": "none", "retry_delay": 0.2, "poll_interval": 0.1})


async def outbox(daemon_or_config) -> dict[str, int]:
    """How many outgoing mails are in each status (those with any), read through a connection of its own."""
    config = daemon_or_config.config if isinstance(daemon_or_config, Daemon) else daemon_or_config
    async with database_for(config.storage) as db, db.read() as store:
        return {status: count for status, count in (await store.outbox.counts()).items() if count}


async def test_relay_down_then_up_delivers_each_mail_once(tmp_path: Path) -> None:
    """While the relay refuses connections mail waits; once it is up, each mail arrives exactly once."""
    port = free_port()
    async with Daemon(relay_config(tmp_path, port)) as daemon:
        await send(daemon.smtp_port, make_mail(CUSTOMER))
        await settle(daemon)
        await asyncio.sleep(0.5)
        assert await outbox(daemon) == {"queued": 2}
        async with Sink(port) as sink:
            await mails_to(sink, 2)
            await asyncio.sleep(1.0)  # time for any duplicate to show up
            assert sorted(item.rcpt_tos[0] for item in sink.received) == [CUSTOMER, OPERATOR]
            assert await outbox(daemon) == {"sent": 2}


async def test_permanent_refusal_marks_the_mail_failed_and_tells_operators(tmp_path: Path) -> None:
    """A 550 for the customer's address fails that mail at once, flags the address and tells operators."""
    async with desk(tmp_path) as (daemon, sink):
        sink.refuse[CUSTOMER] = "550 5.1.1 <anna@customer.example>: Recipient address rejected"
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        failure = parsed(notices[-1])
        assert "Zustellung fehlgeschlagen" in failure["Subject"]
        assert "550 5.1.1" in body_of(failure) and CUSTOMER in body_of(failure)
        await quiet(daemon)
        assert await outbox(daemon) == {"failed": 1, "sent": 2}
        from mailticketd.views import users_view
        async with daemon.db.read() as store:
            [user] = [u for u in await users_view(store) if u["address"] == CUSTOMER]
        assert "550 5.1.1" in user["delivery_failure"]  # what `mailticketd users --json` shows


async def test_queued_mail_is_delivered_after_a_restart(tmp_path: Path) -> None:
    """Mail queued while the relay was down is sent by the next daemon once the relay is back."""
    port = free_port()
    config = relay_config(tmp_path, port)
    async with Daemon(config) as daemon:
        await send(daemon.smtp_port, make_mail(CUSTOMER))
        await settle(daemon)
    assert await outbox(config) == {"queued": 2}
    async with Sink(port) as sink, Daemon(config):
        await mails_to(sink, 2)
    assert await outbox(config) == {"sent": 2}


async def test_maildir_is_the_default_transport_with_delivered_to(tmp_path: Path) -> None:
    """With the embedded outbound defaults, each recipient's mail is a file in the maildir with Delivered-To."""
    config = make_config(tmp_path)
    async with Daemon(config) as daemon:
        await deliver(daemon, make_mail(CUSTOMER))
        await quiet(daemon)
    files = sorted((config.outbound.maildir / "new").iterdir())
    firsts = sorted(path.read_bytes().split(b"\n", 1)[0].strip() for path in files)
    assert firsts == [f"Delivered-To: {CUSTOMER}".encode(), f"Delivered-To: {OPERATOR}".encode()]
