"""The storage layer keeps working after a transaction is cut short."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

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
