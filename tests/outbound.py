"""Helpers for tests of outgoing mail: a daemon whose relay is a real SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailticketd.app import Daemon
from tests.helpers import make_config, send, settle
from tests.sink import Received, Sink

OPERATOR = "op@provider.example"


def parsed(item: Received) -> EmailMessage:
    message = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@asynccontextmanager
async def desk(tmp_path: Path, **sections: dict[str, Any]) -> AsyncIterator[tuple[Daemon, Sink]]:
    """The daemon with outbound mail through a real SMTP sink."""
    async with Sink() as sink:
        outbound = {"transport": "smtp", "relay": sink.relay, "relay_security": "none", "retry_delay": 0.2,
                    "poll_interval": 0.1}
        outbound.update(sections.pop("outbound", {}))
        config = make_config(tmp_path, outbound=outbound, **sections)
        async with Daemon(config) as daemon:
            yield daemon, sink


async def mails_to(sink: Sink, count: int, *, timeout: float = 20.0,
                   where: Callable[[Received], bool] = lambda item: True) -> list[Received]:
    """Wait until ``count`` mails matching ``where`` arrived; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [item for item in sink.received if where(item)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} mails, got {[(i.rcpt_tos, parsed(i)['Subject']) for i in sink.received]}")


def to(address: str) -> Callable[[Received], bool]:
    return lambda item: address in item.rcpt_tos


async def deliver(daemon: Daemon, raw: bytes, **kwargs: Any) -> None:
    await send(daemon.smtp_port, raw, **kwargs)
    await settle(daemon)


async def quiet(daemon: Daemon) -> None:
    """Let the delivery worker send everything that is due."""
    await settle(daemon)
    daemon.delivery.wake()
    for _ in range(100):
        async with daemon.db.read() as store:
            if not await store.outbox.list(("queued",)):
                return
        await asyncio.sleep(0.05)
