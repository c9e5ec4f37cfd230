"""Moving a desk from SQLite to PostgreSQL with ``mailticketd migrate-database``: a desk the daemon made (mails in
over SMTP, tickets, attachments, sessions, audit entries) is copied, verified, and a daemon on PostgreSQL carries
it on; a non-empty target, a running daemon and a corrupted copy are refused or found."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from mailticketd.app import Daemon
from mailticketd.config import Config
from tests.helpdesk import MANAGER, browserless, people
from tests.helpers import TOKEN_SECRET, make_config, make_mail, send, settle
from tests.process import cli
from tests.test_shared_database import outbox_settled

pytestmark = pytest.mark.postgresql

SECRET = f'[mail]\ntoken_secrets = ["{TOKEN_SECRET}"]\n'


def sqlite_config(tmp_path: Path) -> tuple[Config, Path]:
    """The desk on SQLite, and a config file naming the same database for the CLI."""
    database = tmp_path / "desk" / "mailticketd.sqlite3"
    config = make_config(tmp_path / "desk", storage={"database": str(database)},
                         mail={"token_secrets": [TOKEN_SECRET]})
    path = tmp_path / "sqlite.toml"
    path.write_text(f'[storage]\ndatabase = "{database}"\n\n{SECRET}', encoding="utf-8")
    return config, path


async def build_desk(tmp_path: Path) -> tuple[Config, Path]:
    """A desk on SQLite made by the daemon: customers with passwords, three tickets from mails over SMTP (one with
    an attachment, one with a reply), a web session, an audit entry, outgoing mail sent."""
    config, path = sqlite_config(tmp_path)
    async with Daemon(config) as daemon:
        await people(daemon)
        for index in range(3):
            attachments = [("log.txt", "text/plain", b"kernel: oops\n" * 200)] if index == 0 else None
            await send(daemon.smtp_port, make_mail(MANAGER, subject=f"de-fr-srv-0815 Problem {index}",
                                                   message_id=f"old{index}@kunde.example", attachments=attachments),
                       mail_from=MANAGER)
        await send(daemon.smtp_port, make_mail(MANAGER, subject="Re: de-fr-srv-0815 Problem 1", body="Noch da.",
                                               in_reply_to="old1@kunde.example", message_id="old1r@kunde.example"),
                   mail_from=MANAGER)
        await settle(daemon)
        await outbox_settled(daemon)
        async with browserless(daemon, address=MANAGER):
            pass  # a session row
        audit = await asyncio.to_thread(cli, "--config", str(path), "--actor", "admin", "monitoring", "set", MANAGER,
                                        "--phone", "+49 30 1234")
        assert audit.returncode == 0, audit.stderr
    return config, path


def migrate(path: Path, url: str, *options: str) -> tuple[int, dict[str, object], str]:
    result = cli("--config", str(path), "migrate-database", "--to", url, "--json", *options)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else {}), result.stderr


async def test_a_migrated_desk_carries_on_on_postgresql(tmp_path: Path, postgres_cluster: object) -> None:
    """An SQLite desk copied into an empty PostgreSQL database matches table by table, and a daemon on PostgreSQL
    carries on: a reply to an old ticket threads into it, the next ticket number follows the old ones, an old
    customer's password still logs in, attachments are still there."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    config, path = await build_desk(tmp_path)
    url = postgres_cluster.empty_database()
    code, report, errors = await asyncio.to_thread(migrate, path, url)
    assert code == 0, errors
    tables = {row["table"]: row for row in report["tables"]}  # type: ignore[attr-defined]
    assert report["ok"] is True and all(row["ok"] for row in tables.values())
    assert tables["tickets"]["target_rows"] == 3 and tables["articles"]["target_rows"] >= 4
    for table in ("attachment_blobs", "web_sessions", "audit_log", "outbox", "users", "message_ids", "inbox_raw"):
        assert tables[table]["target_rows"] > 0, table
    assert "copied tickets: 3 rows" in errors  # plain progress lines when not on a terminal

    pg_config = make_config(tmp_path / "pg", storage={"database": url}, mail={"token_secrets": [TOKEN_SECRET]})
    async with Daemon(pg_config) as daemon:
        async with daemon.db.read() as store:
            old = {ticket.number for ticket in await store.tickets.list()}
        await send(daemon.smtp_port, make_mail(MANAGER, subject="Re: de-fr-srv-0815 Problem 2", body="Wieder da.",
                                               in_reply_to="old2@kunde.example", message_id="new1@kunde.example"),
                   mail_from=MANAGER)
        await send(daemon.smtp_port, make_mail(MANAGER, subject="Ganz neues Problem",
                                               message_id="new2@kunde.example"), mail_from=MANAGER)
        await settle(daemon)
        async with daemon.db.read() as store:
            tickets = {ticket.number for ticket in await store.tickets.list()}
            threaded = await store.articles.for_ticket((await store.tickets.by_number(min(old) + 2)).id)  # type: ignore[union-attr]
            first = await store.articles.for_ticket((await store.tickets.by_number(min(old))).id)  # type: ignore[union-attr]
        async with browserless(daemon, address=MANAGER) as client:  # logs in with the old password
            status, page = await client.get("/")
    assert "new1@kunde.example" in {article.message_id for article in threaded}
    assert sorted(tickets) == sorted(old) + [max(old) + 1]
    assert status == 200 and "Problem 0" in page
    assert any(article.attachments for article in first)


async def test_a_running_daemon_and_a_non_empty_target_are_refused(tmp_path: Path, postgres_cluster: object) -> None:
    """migrate-database refuses while a daemon serves the SQLite file (exit 1, saying to stop it), and refuses a
    target that holds data, naming the tables and their rows, without changing it."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    config, path = await build_desk(tmp_path)
    url = postgres_cluster.empty_database()
    async with Daemon(config):
        code, _, errors = await asyncio.to_thread(migrate, path, url)
    assert code == 1 and "Stop it first" in errors and "already serves" in errors
    assert (await asyncio.to_thread(migrate, path, url))[0] == 0
    code, _, errors = await asyncio.to_thread(migrate, path, url)
    assert code == 1
    assert "not empty" in errors and "tickets (3 rows)" in errors and "organisations (2 rows)" in errors
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tickets") == 3
    finally:
        await conn.close()


async def test_a_row_changed_after_the_copy_is_found_by_verify_only(tmp_path: Path,
                                                                    postgres_cluster: object) -> None:
    """``--verify-only`` after a copy matches; once one article's text is altered in PostgreSQL it exits 3 and
    names exactly that table."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    _, path = await build_desk(tmp_path)
    url = postgres_cluster.empty_database()
    assert (await asyncio.to_thread(migrate, path, url))[0] == 0
    code, report, _ = await asyncio.to_thread(migrate, path, url, "--verify-only")
    assert code == 0 and report["ok"] is True and report["copied"] is False
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE articles SET visible_text = visible_text || '!' WHERE id = 1")
    finally:
        await conn.close()
    code, report, _ = await asyncio.to_thread(migrate, path, url, "--verify-only")
    assert code == 3 and report["ok"] is False
    bad = [row["table"] for row in report["tables"] if not row["ok"]]  # type: ignore[attr-defined]
    assert bad == ["articles"]
    text = await asyncio.to_thread(cli, "--config", str(path), "migrate-database", "--to", url, "--verify-only")
    assert text.returncode == 3 and "MISMATCH: articles differ" in text.stdout


async def test_every_table_of_both_schemas_is_moved(tmp_path: Path, postgres_cluster: object) -> None:
    """No table is left behind: the tables migrate-database copies are exactly those of the newest SQLite schema
    and of the newest PostgreSQL schema (a migration that adds a table must add it to the move as well)."""
    from mailticketd.storage import database_for
    from mailticketd.storage.move import TABLES
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    config, _ = sqlite_config(tmp_path)
    async with database_for(config.storage) as db, db.read() as store:
        sqlite_tables = {row[0] for row in await store.conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    url = postgres_cluster.empty_database()
    target = make_config(tmp_path / "pg", storage={"database": url}, mail={"token_secrets": [TOKEN_SECRET]})
    async with database_for(target.storage) as db, db.read() as store:
        postgres_tables = {row[0] for row in await store.conn.execute_fetchall(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version'")}
    assert sqlite_tables == set(TABLES) == postgres_tables, (sqlite_tables ^ set(TABLES), postgres_tables ^ set(TABLES))
