"""Shared test helpers: building mails, talking SMTP to the daemon, waiting for the inbox worker."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiosmtplib

from mailticketd.app import Daemon
from mailticketd.config import Config, load_config

SUPPORT = "support@example.net"
# The PostgreSQL database of the running test (tests/conftest.py sets it on that backend), else None: SQLite.
DATABASE_URL: str | None = None
# Daemons sharing a PostgreSQL database sign reply tokens with configured secrets (a generated one is refused).
TOKEN_SECRET = "test-secret-for-every-daemon-0123"
CORPUS = Path(os.environ.get("MAILTICKETD_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus" / "mail"))


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A config on real files under ``tmp_path`` (the database: the test's PostgreSQL one on that backend), SMTP on a
    free loopback port."""
    overrides: dict[str, dict[str, Any]] = {
        "smtp": {"listen": "127.0.0.1:0", "hostname": "mx.example.net"},
        "http": {"listen": "127.0.0.1:0"},
        "mail": {"addresses": [SUPPORT, "helpdesk@example.net"]},
        "storage": {"database": str(tmp_path / "mailticketd.sqlite3")},
        "outbound": {"maildir": str(tmp_path / "maildir")},
        "inbox": {"poll_interval": 0.2, "retry_delay": 0.2},
        "operators": {"addresses": ["op@provider.example"]},
    }
    if DATABASE_URL is not None:
        overrides["storage"]["database"] = DATABASE_URL
        overrides["mail"]["token_secrets"] = [TOKEN_SECRET]
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(None, overrides)


def make_mail(
    sender: str = "kunde@customer.example",
    subject: str = "Server down",
    body: str = "Hello, de-fr-srv-0815 does not answer.",
    *,
    to: str = SUPPORT,
    cc: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    """A plain text mail as a client would send it; ids are given without angle brackets."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = f"<{message_id}>" if message_id else make_msgid(domain="customer.example")
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    for name, content_type, content in attachments or []:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().strip(b"<>").decode()
    raise AssertionError("no Message-ID")


async def send(port: int, raw: bytes, *, mail_from: str | None = None, rcpt: list[str] | None = None) -> str:
    """Deliver ``raw`` over SMTP; returns the server's final reply line."""
    sender = mail_from if mail_from is not None else "kunde@customer.example"
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
        errors, message = await client.sendmail(sender, rcpt or [SUPPORT], raw)
    assert not errors, errors
    return message


async def settle(daemon: Daemon, timeout: float = 30.0) -> None:
    """Wait until the inbox has no pending row that is due."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with daemon.db.read() as store:
            pending = await store.inbox.list(("pending",))
        if not pending:
            return
        daemon.worker.wake()
        await asyncio.sleep(0.05)
    raise AssertionError(f"inbox still pending after {timeout}s: {pending}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
