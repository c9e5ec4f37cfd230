"""The storage layer's shortcuts keep their promises: indexed hot queries, one trip a statement, rollback."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailticketd.storage import SqliteDatabase as Database


async def test_the_automatic_answer_limit_is_counted_from_an_index(tmp_path: Path) -> None:
    """The per-recipient count behind ``max_auto_replies_per_hour`` searches an index, never the whole outbox,
    so it stays as fast with a million sent mails as with ten."""
    async with Database(tmp_path / "db.sqlite3"):
        pass
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM outbox WHERE lower(rcpt_to) = lower(?) AND kind IN (?, ?, ?)"
            " AND created_at >= ?", ("a@b", "ack", "notice", "command-error", "2024-01-01")).fetchall()
    details = " ".join(row[3] for row in plan)
    assert "SCAN outbox" not in details and "outbox_recipient_lower" in details


async def test_statements_inside_a_transaction_are_undone_together_when_it_fails(tmp_path: Path) -> None:
    """A transaction whose short statements ran at once and whose big ones ran in the database thread is rolled
    back whole when it raises: no inbox row of it remains."""
    async with Database(tmp_path / "db.sqlite3") as db:
        with pytest.raises(RuntimeError):
            async with db.transaction() as store:
                await store.inbox.add(peer="p", mail_from="a@b", rcpt_tos=["s@x"], message_id="small", raw=b"x")
                await store.inbox.add(peer="p", mail_from="a@b", rcpt_tos=["s@x"], message_id="big",
                                      raw=b"y" * 200_000)
                raise RuntimeError("the pipeline failed")
        async with db.transaction() as store:
            kept = await store.inbox.add(peer="p", mail_from="a@b", rcpt_tos=["s@x"], message_id="kept",
                                         raw=b"z" * 200_000)
        async with db.read() as store:
            rows = await store.inbox.list(("pending",))
            due = await store.inbox.next_due_batch(datetime.now(timezone.utc), limit=8, max_bytes=1 << 20)
    assert [row.message_id for row in rows] == ["kept"]
    assert [(row.id, raw) for row, raw in due] == [(kept, b"z" * 200_000)]
