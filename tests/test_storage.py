"""The storage layer keeps working after a transaction is cut short."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from mailticketd.clock import utc_now
from mailticketd.storage import SqliteDatabase, database_for
from tests.helpers import make_config


@pytest.mark.sqlite_only
async def test_cancelled_transaction_leaves_the_connection_usable(tmp_path: Path) -> None:
    """A write cancelled while it waits for another process's lock (an SMTP client hanging up) does not wedge later writes."""
    async with SqliteDatabase(tmp_path / "db.sqlite3", busy_timeout=1.0) as db:
        blocker = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")

        async def write() -> None:
            async with db.transaction() as store:
                await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=None, raw=b"x")

        task = asyncio.create_task(write())
        await asyncio.sleep(0.2)  # BEGIN IMMEDIATE is waiting on the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        blocker.execute("ROLLBACK")
        blocker.close()
        await write()
        async with db.read() as store:
            assert await store.inbox.backlog() == 1


async def test_failed_statement_rolls_back_the_whole_transaction(tmp_path: Path) -> None:
    """An error inside a transaction undoes its earlier writes and the next transaction starts clean."""
    async with database_for(make_config(tmp_path).storage) as db:
        with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
            async with db.transaction() as store:
                await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=None, raw=b"x")
                await store.conn.execute("INSERT INTO tickets (id, number, subject, created_at, updated_at)"
                                         " VALUES (1, 1, 's', 'now', 'now')")
                await store.conn.execute("INSERT INTO tickets (id, number, subject, created_at, updated_at)"
                                         " VALUES (1, 1, 's', 'now', 'now')")
        async with db.transaction() as store:
            assert await store.inbox.backlog() == 0


async def _add(db: SqliteDatabase, raw: bytes, *, backlog: bool = True) -> None:
    async with db.transaction(backlog=backlog) as store:
        await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=None, raw=raw)


@pytest.mark.sqlite_only
async def test_commits_leave_the_event_loop_once_the_disk_is_slow(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """In a storm a small transaction commits at once while commits are quick; without one, once they take long
    (a slow disk, shown by a clock that jumps), and for a big transaction always, the commit runs in the database
    thread, and everything is stored either way."""
    import mailticketd.storage.db as db_module

    async with SqliteDatabase(tmp_path / "db.sqlite3") as db:
        for _ in range(5):
            await _add(db, b"small mail")
        assert db.commits_in_thread == 0
        await _add(db, b"small mail", backlog=False)  # nothing waits: the loop's latency first
        assert db.commits_in_thread == 1
        await _add(db, b"x" * 100_000)  # carried to the thread for its size: so is its commit
        assert db.commits_in_thread == 2
        ticks = iter(range(0, 10**6, 50))  # every look at the clock is 50 ms later: each commit "took" 50 ms
        monkeypatch.setattr(db_module.time, "perf_counter", lambda: next(ticks) / 1000)
        for _ in range(5):
            await _add(db, b"small mail")
        assert db.commits_in_thread >= 5  # after the first slow one, the rest go to the thread
        async with db.read() as store:
            assert await store.inbox.backlog() == 12


@pytest.mark.sqlite_only
async def test_the_log_is_copied_into_the_database_while_only_the_pipeline_writes(tmp_path: Path) -> None:
    """The pipeline's connection checkpoints the write-ahead log itself: after many commits with nothing else
    writing, the log stays small instead of growing with every mail."""
    async with SqliteDatabase(tmp_path / "db.sqlite3") as db:
        for _ in range(200):
            await _add(db, b"y" * 12_000)  # about four pages of log each
        wal = (tmp_path / "db.sqlite3-wal").stat().st_size
    assert wal < 2 << 20, f"the log grew to {wal} bytes"


@pytest.mark.sqlite_only
async def test_a_transaction_of_many_small_statements_commits_in_the_database_thread(tmp_path: Path) -> None:
    """A mail of many small attachments (each statement small, all of them big) never commits in the event loop's
    thread, even in a storm."""
    async with SqliteDatabase(tmp_path / "db.sqlite3") as db:
        async with db.transaction(backlog=True) as store:
            for _ in range(10):
                await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=None,
                                      raw=b"z" * 15_000)
        assert db.commits_in_thread == 1
        async with db.read() as store:
            assert await store.inbox.backlog() == 10


async def test_a_mail_due_again_is_read_with_the_rows_after_the_last_one_read(tmp_path: Path) -> None:
    """While newer mail keeps the worker reading on past the last row it read, a mail that failed once is read
    again as soon as its retry is due, not only once the storm is over."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        async with db.transaction() as store:
            failed = await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id="<f@x>", raw=b"x")
            newer = [await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=f"<n{n}@x>",
                                           raw=b"x") for n in range(3)]
            await store.inbox.mark_attempt_failed(failed, reason="locked", retry_at=utc_now() - timedelta(seconds=1))
        async with db.claims() as store:
            due = await store.inbox.claim_due_batch(utc_now(), owner=db.owner, lease_until=utc_now(), limit=8,
                                                    max_bytes=1 << 20, after=newer[0])
    assert [row.id for row, _ in due] == [failed, *newer[1:]]


async def test_a_failed_attempt_never_turns_a_processed_mail_back_to_pending(tmp_path: Path) -> None:
    """An error reported after a mail's transaction committed (its row done) does not put the mail in line again,
    so it is never processed twice, nor marks it failed (the worker then tells no operator of a failure)."""
    config = make_config(tmp_path)
    async with database_for(config.storage) as db:
        async with db.transaction() as store:
            inbox_id = await store.inbox.add(peer="", mail_from="a@b", rcpt_tos=["s@x"], message_id=None, raw=b"x")
            pending_id = await store.inbox.add(peer="", mail_from="c@d", rcpt_tos=["s@x"], message_id=None, raw=b"y")
            await store.inbox.mark_done(inbox_id, decision="new", ticket_id=None)
        async with db.transaction() as store:
            assert not await store.inbox.mark_attempt_failed(inbox_id, reason="late error", retry_at=utc_now())
            assert not await store.inbox.mark_attempt_failed(inbox_id, reason="late error", retry_at=None)
            assert await store.inbox.mark_attempt_failed(pending_id, reason="real error", retry_at=None)
        async with db.read() as store:
            assert await store.inbox.backlog() == 0
            assert [(row.id, row.status) for row in await store.inbox.list(("done", "failed", "pending"))] == [
                (inbox_id, "done"), (pending_id, "failed")]
