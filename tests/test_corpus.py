"""Every real-world mail of the shared corpus goes through SMTP and the pipeline without harm."""

from __future__ import annotations

import sqlite3

import pytest

from mailticketd.app import Daemon
from tests.helpers import CORPUS, make_mail, send, settle

MAILS = sorted(path for path in CORPUS.iterdir() if path.suffix in (".eml", ".txt")) if CORPUS.is_dir() else []


def test_the_corpus_is_there() -> None:
    """The shared corpus is found, so the corpus tests below really run."""
    assert len(MAILS) > 80, f"corpus not found at {CORPUS}"


async def test_every_corpus_mail_is_accepted_and_processed(daemon: Daemon) -> None:
    """Each corpus file gets 250, is processed into a ticket article (none failed), and the daemon stays up."""
    for path in MAILS:
        reply = await send(daemon.smtp_port, path.read_bytes(), mail_from="sender@corpus.example")
        assert reply.startswith("2.0.0"), (path.name, reply)
    await settle(daemon, timeout=120)
    with sqlite3.connect(daemon.config.storage.database) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall()
        failed = conn.execute("SELECT id, reason FROM inbox WHERE status = 'failed'").fetchall()
        articles = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
        duplicates = conn.execute("SELECT count(*) FROM inbox WHERE decision = 'duplicate'").fetchone()[0]
    assert failed == []
    assert dict(statuses) == {"done": len(MAILS)}
    assert articles + duplicates == len(MAILS)
    assert (await send(daemon.smtp_port, make_mail())).startswith("2.0.0")


@pytest.mark.parametrize("path", [p for p in MAILS if p.name.startswith(("sisimai-", "gitlab-auto_reply"))],
                         ids=lambda p: p.name)
async def test_corpus_bounces_and_auto_replies_are_never_to_be_answered(daemon: Daemon, path) -> None:
    """Bounces and out-of-office mails of the corpus are stored marked as not to be answered."""
    await send(daemon.smtp_port, path.read_bytes(), mail_from="")
    await settle(daemon)
    with sqlite3.connect(daemon.config.storage.database) as conn:
        kind, flags = conn.execute("SELECT kind, flags FROM articles").fetchone()
    assert kind in ("bounce", "auto-reply")
    assert "no-auto-reply:" in flags
