"""Verification links leave with the mail and are not kept: not in the database, not in a backup."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import sqlite3
from pathlib import Path

from mailticketd.app import Daemon
from tests.helpers import make_config, make_mail, send
from tests.outbound import quiet
from tests.process import cli

CUSTOMER = "kunde@customer.example"


def chunks(token: str, size: int = 10) -> list[bytes]:
    """Pieces of the token, so a quoted-printable line break inside it cannot hide it from the search."""
    return [token[start:start + size].encode() for start in range(0, len(token) - size + 1, size)]


def sent_token(maildir: Path) -> str:
    (ack,) = [path for path in (maildir / "new").iterdir() if b"Delivered-To: " + CUSTOMER.encode() in path.read_bytes()]
    message = email.message_from_bytes(ack.read_bytes(), policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"/verify/([A-Za-z0-9_-]{30,})", str(body.get_content()))
    assert found, body.get_content()
    return found.group(1)


async def test_a_sent_verification_link_is_in_neither_the_database_nor_a_backup(tmp_path: Path) -> None:
    """Once the acknowledgement with its link has left, the outbox keeps it without the token, and `backup` copies no trace of it."""
    config = make_config(tmp_path)
    backup = tmp_path / "backup.sqlite3"
    (tmp_path / "cli.toml").write_text(f'[storage]\ndatabase = "{config.storage.database}"\n', encoding="utf-8")
    async with Daemon(config) as daemon:
        await send(daemon.smtp_port, make_mail(CUSTOMER, subject="Hallo"))
        await quiet(daemon)
        token = sent_token(config.outbound.maildir)
        done = await asyncio.to_thread(cli, "--config", str(tmp_path / "cli.toml"), "backup", str(backup))
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(config.storage.database) as conn:
            (kept,) = conn.execute("SELECT raw FROM outbox WHERE rcpt_to = ?", (CUSTOMER,)).fetchone()
    message = email.message_from_bytes(bytes(kept), policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None and "/verify/…" in str(body.get_content())  # staff still see that a link was sent
    copied = backup.read_bytes()
    assert not [piece for piece in chunks(token) if piece in copied]
    live = config.storage.database.read_bytes()
    assert not [piece for piece in chunks(token) if piece in live]
