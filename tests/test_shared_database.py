"""Several daemons on one PostgreSQL database: every mail processed once, every outgoing mail written once.

These tests always run on a private PostgreSQL cluster (tests/postgres.py), whichever backend the rest of the
session uses; the daemons here run in one process, each with its own connections, SMTP port and maildir.
"""

from __future__ import annotations

import asyncio
import email
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.outbox.transports import make_transport
from mailticketd.outbox.worker import DeliveryWorker
from mailticketd.storage import database_for
from mailticketd.storage.postgresql import PostgresDatabase
from tests.helpdesk import MANAGER, browserless, people
from tests.helpers import TOKEN_SECRET, free_port, make_config, make_mail, send, settle
from tests.process import DaemonProcess, cli

pytestmark = pytest.mark.postgresql


def shared_config(tmp_path: Path, url: str, name: str, **sections: dict[str, Any]) -> Config:
    """One daemon's config on the shared database: its own folder and maildir, the common token secret."""
    folder = tmp_path / name
    storage = {"database": url} | sections.pop("storage", {})
    return make_config(folder, storage=storage, mail={"token_secrets": [TOKEN_SECRET]},
                       outbound={"maildir": str(folder / "maildir")}, **sections)


@asynccontextmanager
async def daemons(tmp_path: Path, url: str, count: int, **sections: dict[str, Any]) -> AsyncIterator[list[Daemon]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Daemon(shared_config(tmp_path, url, f"d{index}", **sections)))
               for index in range(count)]


async def outbox_settled(daemon: Daemon, timeout: float = 60.0) -> None:
    """Wait until no outgoing mail is queued."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with daemon.db.read() as store:
            if (await store.outbox.counts())["queued"] == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("outgoing mail still queued")


def written(running: list[Daemon]) -> list[tuple[str, str]]:
    """(Message-ID, Delivered-To) of every file in the daemons' maildirs."""
    found = []
    for daemon in running:
        for path in sorted((daemon.config.outbound.maildir / "new").glob("*")):
            message = email.message_from_bytes(path.read_bytes())
            found.append((str(message["Message-ID"]).strip("<>"), str(message["Delivered-To"]).lower()))
    return found


async def test_two_daemons_receiving_at_once_make_each_mail_one_article(tmp_path: Path, postgres_url: str) -> None:
    """Mail sent to two daemons on one database at once, new tickets and replies crossing between them: every
    mail is one article, every ticket number is handed out once from the configured start, and every outgoing
    mail is written to a maildir exactly once."""
    async with daemons(tmp_path, postgres_url, 2, tickets={"first_number": 5000}) as running:
        gate = asyncio.Semaphore(8)

        async def deliver(index: int, raw: bytes) -> None:
            async with gate:
                await send(running[index % 2].smtp_port, raw, mail_from=f"kunde{index}@customer.example")

        firsts = [make_mail(f"kunde{index}@customer.example", subject=f"Server {index} down",
                            message_id=f"first{index}@customer.example") for index in range(24)]
        await asyncio.gather(*(deliver(index, raw) for index, raw in enumerate(firsts)))
        await settle(running[0])
        # Each reply goes to the daemon that did not receive the first mail.
        replies = [make_mail(f"kunde{index}@customer.example", subject=f"Re: Server {index} down",
                             body="Still down.", in_reply_to=f"first{index}@customer.example",
                             references=f"<first{index}@customer.example>") for index in range(24)]
        await asyncio.gather(*(deliver(index + 1, raw) for index, raw in enumerate(replies)))
        await settle(running[1])
        for daemon in running:
            daemon.delivery.wake()
        await outbox_settled(running[0])

        async with running[0].db.read() as store:
            inbox = await store.inbox.list(("pending", "failed", "done"))
            tickets = await store.tickets.list()
            articles = {ticket.number: await store.articles.for_ticket((await store.tickets.by_number(ticket.number)).id)  # type: ignore[union-attr]
                        for ticket in tickets}
            counts = await store.outbox.counts()
        assert len(inbox) == 48 and {row.status for row in inbox} == {"done"}
        assert {row.attempts for row in inbox} == {1}  # each processed by one daemon, once
        assert not [row for row in inbox if row.decision == "duplicate"]
        assert sorted(ticket.number for ticket in tickets) == list(range(5000, 5024))
        mail_ids = Counter(article.message_id for views in articles.values() for article in views
                           if article.kind == "mail")
        assert len(mail_ids) == 48 and set(mail_ids.values()) == {1}
        for views in articles.values():  # first mail and its reply in the same ticket
            assert len([view for view in views if view.kind == "mail"]) == 2
        health = await running[1].health()
        assert health["database"]["ok"] and health["inbox"]["pending"] == 0, health
        files = written(running)
        assert counts["queued"] == 0 and len(files) == counts["sent"] > 0
        assert len(set(files)) == len(files)  # no mail written twice
        assert all(count for count in Counter(daemon.config.outbound.maildir for daemon in running).values())


async def test_two_serve_processes_on_one_database_share_the_mail(tmp_path: Path, postgres_url: str) -> None:
    """Two `mailticketd serve` processes on one database, each sent half of the mail over SMTP: every mail becomes
    one ticket, processed by one of them, and both stop cleanly."""
    processes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()
        config = folder / "mailticketd.toml"
        config.write_text(f'[smtp]\nlisten = "127.0.0.1:{port}"\n[http]\nlisten = "127.0.0.1:0"\n'
                          f'[mail]\naddresses = ["support@example.net"]\ntoken_secrets = ["{TOKEN_SECRET}"]\n'
                          f'[storage]\ndatabase = "{postgres_url}"\n[outbound]\nmaildir = "{folder / "maildir"}"\n'
                          '[inbox]\npoll_interval = 0.2\n[log]\nformat = "json"\n', encoding="utf-8")
        processes.append(DaemonProcess(config, port, folder / "daemon.log"))
    try:
        for process in processes:
            process.start()
        await asyncio.gather(*(send(processes[index % 2].port, make_mail(f"kunde{index}@customer.example",
                                                                         subject=f"Server {index} down"))
                               for index in range(20)))
        assert await asyncio.to_thread(_processed, processes, 20)
        await asyncio.sleep(0.5)  # time for a mail processed twice to show in the logs
        assert sum(_processed_count(process) for process in processes) == 20
        assert [process.terminate() for process in processes] == [0, 0]
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.kill()
    config = make_config(tmp_path, storage={"database": postgres_url}, mail={"token_secrets": [TOKEN_SECRET]})
    async with database_for(config.storage) as db, db.read() as store:
        inbox = await store.inbox.list(("pending", "failed", "done"))
        tickets = await store.tickets.list()
    assert len(inbox) == 20 and {(row.status, row.attempts) for row in inbox} == {("done", 1)}
    assert sorted(ticket.subject for ticket in tickets) == sorted(f"Server {index} down" for index in range(20))


def _processed_count(process: DaemonProcess) -> int:
    return len([event for event in process.events() if event.get("event") == "mail.processed"])


def _processed(processes: list[DaemonProcess], count: int, timeout: float = 60.0) -> bool:
    """Wait until the processes' logs hold ``count`` processed mails together."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(_processed_count(process) for process in processes) >= count:
            return True
        time.sleep(0.1)
    return False


async def test_a_mail_claimed_by_a_daemon_that_died_is_processed_once_its_lease_ends(
        tmp_path: Path, postgres_url: str) -> None:
    """A mail that a dead daemon had claimed waits for the claim's lease to end, then another daemon makes it one
    ticket; before that it is left alone."""
    async with daemons(tmp_path, postgres_url, 1, inbox={"claim_lease": 1.0, "poll_interval": 0.1}) as [daemon]:
        daemon.worker.stop()  # the dead daemon's part is played by hand
        await send(daemon.smtp_port, make_mail(message_id="orphan@customer.example"))
        now = utc_now()
        async with daemon.db.claims() as store:
            claimed = await store.inbox.claim_due_batch(now, owner="dead-host:1:0", limit=8, max_bytes=1 << 20,
                                                        lease_until=now + timedelta(seconds=1.5))
        assert [row.message_id for row, _ in claimed] == ["orphan@customer.example"]
        async with daemon.db.claims() as store:  # nobody takes it while the lease holds
            assert await store.inbox.claim_due_batch(now, owner="other", limit=8, max_bytes=1 << 20,
                                                     lease_until=now + timedelta(seconds=1)) == []
    async with daemons(tmp_path, postgres_url, 1, inbox={"claim_lease": 1.0, "poll_interval": 0.1}) as [daemon]:
        await asyncio.sleep(1.6)
        await settle(daemon)
        async with daemon.db.read() as store:
            [row] = await store.inbox.list(("pending", "failed", "done"))
            tickets = await store.tickets.list()
        assert row.status == "done" and len(tickets) == 1


async def test_an_outgoing_mail_leased_by_a_daemon_that_died_is_sent_once_after_the_lease(
        tmp_path: Path, postgres_url: str) -> None:
    """A row a dead daemon leased is not sent by another daemon's start (it may still be sending), but once the
    lease has ended it is sent, once."""
    config = shared_config(tmp_path, postgres_url, "d0")
    async with database_for(config.storage) as db:
        async with db.transaction() as store:
            outbox_id = await store.outbox.enqueue(ticket_id=None, kind="acknowledgement", mail_from="s@example.net",
                                                   rcpt_to="anna@customer.example", message_id="n1@example.net",
                                                   raw=b"Subject: x\r\n\r\nHallo.\r\n")
            assert await store.outbox.claim_next(utc_now(), utc_now() + timedelta(seconds=1)) is not None
        worker = DeliveryWorker(db, config, make_transport(config.outbound))
        assert await worker.drain() == 0  # a new daemon leaves the lease alone
        await asyncio.sleep(1.1)
        assert await DeliveryWorker(db, config, make_transport(config.outbound)).drain() == 1
        assert await DeliveryWorker(db, config, make_transport(config.outbound)).drain() == 0
        async with db.read() as store:
            assert (await store.outbox.get(outbox_id)).status == "sent"  # type: ignore[union-attr]
    assert len(list((config.outbound.maildir / "new").iterdir())) == 1


async def test_a_web_session_made_on_one_daemon_is_valid_on_another(tmp_path: Path, postgres_url: str) -> None:
    """A customer logged in through one host's web helpdesk is logged in on every host of the database."""
    async with daemons(tmp_path, postgres_url, 2) as [first, second]:
        await people(first)
        async with browserless(first, address=MANAGER) as client:
            cookies = {cookie.key: cookie.value for cookie in client.session.cookie_jar}
        base = f"http://127.0.0.1:{second.http_port}"
        async with aiohttp.ClientSession(base_url=base, cookies=cookies) as session:
            async with session.get("/tickets") as response:
                page = await response.text()
        assert response.status == 200 and "Abmelden" in page
        async with aiohttp.ClientSession(base_url=base) as session:  # without the cookie: the log-in page
            async with session.get("/tickets") as response:
                assert "Abmelden" not in await response.text()


async def test_daemons_starting_together_migrate_an_empty_database_once(postgres_cluster: Any) -> None:
    """Three daemons opening a new, empty database at the same moment all start, and the schema is made once."""
    url = postgres_cluster.empty_database()
    try:
        databases = [PostgresDatabase(url) for _ in range(3)]
        await asyncio.gather(*(database.open() for database in databases))
        async with databases[0].read() as store:
            versions = await store.conn.execute_fetchall("SELECT version FROM schema_version")
        for database in databases:
            await database.close()
        # each migration once, in order
        assert sorted(row[0] for row in versions) == list(range(1, databases[0].schema_version + 1))
    finally:
        postgres_cluster.drop(url)


async def test_the_staff_cli_works_on_the_shared_database_beside_a_daemon(tmp_path: Path, postgres_cluster: Any) -> None:
    """`migrate` makes the schema of a new PostgreSQL database; an organisation the staff CLI creates there is the
    running daemon's at once, and the mails it queued are sent by the daemon."""
    url = postgres_cluster.empty_database()
    try:
        config = tmp_path / "mailticketd.toml"
        config.write_text(f'[storage]\ndatabase = "{url}"\n[mail]\naddresses = ["support@example.net"]\n'
                          f'token_secrets = ["{TOKEN_SECRET}"]\n[outbound]\nmaildir = "{tmp_path / "cli-maildir"}"\n',
                          encoding="utf-8")
        migrated = cli("--config", str(config), "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert f"schema version {PostgresDatabase(url).schema_version}" in migrated.stdout and "mailticketd@127.0.0.1" in migrated.stdout
        async with daemons(tmp_path, url, 1) as [daemon]:
            created = cli("--config", str(config), "org", "create", "Kunde GmbH", "--commercial",
                          "chef@kunde.example", "--technical", "technik@kunde.example")
            assert created.returncode == 0, created.stderr
            async with daemon.db.read() as store:
                organisation = await store.organisations.by_name("kunde gmbh")
                queued = (await store.outbox.counts())["queued"]
            assert organisation is not None and organisation.name == "Kunde GmbH" and queued == 2
            daemon.delivery.wake()
            await outbox_settled(daemon)
            assert {rcpt for _, rcpt in written([daemon])} == {"chef@kunde.example", "technik@kunde.example"}
    finally:
        postgres_cluster.drop(url)


async def test_the_password_comes_from_the_password_file_or_the_environment(
        tmp_path: Path, postgres_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database user who must give a password gets it from [storage] password_file, else from
    $MAILTICKETD_DATABASE_PASSWORD; without either the connection is refused.  That user (an owner, no superuser)
    can make the schema."""
    url = postgres_cluster.password_database("Pferd-Batterie-7")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("MAILTICKETD_DATABASE_PASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    try:
        with pytest.raises(asyncpg.InvalidPasswordError):
            async with database_for(shared_config(tmp_path, url, "none").storage):
                pass
        (tmp_path / "password").write_text("Pferd-Batterie-7\n", encoding="utf-8")
        config = shared_config(tmp_path, url, "file", storage={"password_file": str(tmp_path / "password")})
        async with database_for(config.storage) as db, db.read() as store:
            assert await store.inbox.backlog() == 0
        monkeypatch.setenv("MAILTICKETD_DATABASE_PASSWORD", "Pferd-Batterie-7")
        async with database_for(shared_config(tmp_path, url, "env").storage) as db, db.read() as store:
            assert await store.inbox.backlog() == 0
    finally:
        postgres_cluster.drop(url)


def test_serve_refuses_a_generated_token_secret_on_postgresql(tmp_path: Path) -> None:
    """`serve` on a PostgreSQL database without [mail] token_secrets exits 1 and says which setting is missing,
    before it connects anywhere; `check-config` finds the same."""
    config = tmp_path / "mailticketd.toml"
    config.write_text('[storage]\ndatabase = "postgresql://mailticketd@127.0.0.1:1/desk"\n'
                      '[mail]\naddresses = ["support@example.net"]\ntoken_secrets = []\n', encoding="utf-8")
    result = cli("--config", str(config), "serve")
    assert result.returncode == 1, result.stderr
    assert "[mail] token_secrets" in result.stderr
    checked = cli("--config", str(config), "check-config")
    assert checked.returncode == 2 and "[mail] token_secrets" in checked.stderr


def test_check_config_refuses_a_password_in_the_database_url(tmp_path: Path) -> None:
    """A password written into the database URL is refused by check-config, naming the key and where it goes."""
    config = tmp_path / "mailticketd.toml"
    config.write_text('[storage]\ndatabase = "postgresql://desk:geheim@db.example:5432/desk"\n', encoding="utf-8")
    result = cli("--config", str(config), "check-config")
    assert result.returncode != 0
    assert "[storage] database" in result.stderr and "password" in result.stderr
    assert "geheim" not in result.stderr + result.stdout

