"""Operating a desk on either backend: /healthz reports the database, ``status`` lists every daemon on it (with a
heartbeat), and ``backup`` on PostgreSQL names the pg_dump command instead of copying."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import structlog.testing

from mailticketd import __version__
from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.storage.daemons import DaemonRepository
from tests.helpers import TOKEN_SECRET, make_config
from tests.process import cli


async def healthz(daemon: Daemon) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{daemon.http_port}/healthz") as response:
            return response.status, json.loads(await response.text())


def config_file(tmp_path: Path, config: Config) -> Path:
    """A TOML file for the CLI naming the same database as ``config``."""
    path = tmp_path / "cli.toml"
    database = config.storage.url or str(config.storage.database)
    path.write_text(f'[storage]\ndatabase = "{database}"\n\n[mail]\ntoken_secrets = ["{TOKEN_SECRET}"]\n\n'
                    f'[http]\nlisten = "127.0.0.1:{config.http.port}"\n', encoding="utf-8")
    return path


async def test_healthz_reports_the_database_backend_latency_and_schema(daemon: Daemon) -> None:
    """/healthz names the database's backend, says it is reachable, how long a trivial query took and which
    schema version it holds."""
    status, report = await healthz(daemon)
    database = report["database"]
    assert status == 200 and isinstance(database, dict)
    assert database["backend"] == daemon.db.dialect.name
    assert database["reachable"] is True and database["ok"] is True
    assert 0 <= database["latency_ms"] < 5000
    assert database["schema_version"] == daemon.db.schema_version


@pytest.mark.postgresql
async def test_healthz_is_503_with_the_reason_when_postgresql_is_unreachable(tmp_path: Path,
                                                                             postgres_cluster: object) -> None:
    """When the PostgreSQL database goes away under a running daemon, /healthz answers 503 saying it is not
    reachable and why."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    url = postgres_cluster.database()
    config = make_config(tmp_path, storage={"database": url}, mail={"token_secrets": [TOKEN_SECRET]})
    async with Daemon(config) as daemon:
        assert (await healthz(daemon))[0] == 200
        postgres_cluster.drop(url)
        status, report = await healthz(daemon)
    assert status == 503 and report["ok"] is False
    database = report["database"]
    assert isinstance(database, dict)
    assert database["reachable"] is False and database["backend"] == "postgresql"
    assert "does not exist" in str(database["error"]) or "terminat" in str(database["error"]).lower()


@pytest.mark.postgresql
async def test_a_daemon_stops_even_when_a_database_connection_never_comes_back(tmp_path: Path,
                                                                              postgres_cluster: object) -> None:
    """A statement the server never answers holds its connection; stopping the daemon waits for it only the
    close timeout, then cuts the connections and says so, instead of hanging until systemd kills it."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    config = make_config(tmp_path, storage={"database": postgres_cluster.database()},
                         mail={"token_secrets": [TOKEN_SECRET]})
    daemon = Daemon(config)
    await daemon.__aenter__()
    daemon.db.close_timeout = 0.5  # type: ignore[attr-defined]
    holding = asyncio.Event()

    async def never_answered() -> None:
        async with daemon.db.read() as store:
            holding.set()
            await store.conn.execute_fetchall("SELECT pg_sleep(3600)")

    stuck = asyncio.create_task(never_answered())
    await holding.wait()
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(daemon.__aexit__(None, None, None), 30)
    assert [entry for entry in logs if entry["event"] == "database.connections_cut"]
    with pytest.raises(Exception, match="(?i)connection"):
        await asyncio.wait_for(stuck, 30)


async def test_status_lists_every_daemon_on_the_database_with_its_state(tmp_path: Path, config: Config) -> None:
    """``status`` lists the daemons working on the database: a running one with this host, pid and version, one
    that stopped cleanly as stopped, and one unseen for an hour as gone (shown, not deleted)."""
    async with Daemon(config) as stopped:
        pass
    async with Daemon(config) as daemon:
        async with daemon.db.transaction() as store:
            an_hour_ago = utc_now() - timedelta(hours=1)
            await DaemonRepository(store.conn).beat(owner="mx2.example:4242:ab", host="mx2.example", pid=4242,
                                                    version="0.0.9", started_at=an_hour_ago, now=an_hour_ago)
        path = config_file(tmp_path, daemon.config)
        text = cli("--config", str(path), "status")
        report = json.loads(cli("--config", str(path), "status", "--json").stdout)
    rows = {(row["host"], row["pid"], row["state"]) for row in report["daemons"]}
    here = socket.gethostname()
    assert (here, os.getpid(), "running") in rows and (here, os.getpid(), "stopped") in rows
    assert ("mx2.example", 4242, "gone") in rows and len(rows) == 3
    running = [row for row in report["daemons"] if row["state"] == "running"]
    assert set(running[0]) == {"host", "pid", "version", "started_at", "last_seen", "state"}
    assert running[0]["version"] == __version__
    assert "daemons on the database: 1 running, 3 listed" in text.stdout
    assert f"mx2.example pid 4242 version 0.0.9: gone" in text.stdout
    assert stopped.db.owner != daemon.db.owner


async def test_a_daemon_beats_while_it_runs(tmp_path: Path) -> None:
    """A running daemon's ``last_seen`` moves on every heartbeat, so a live daemon is never shown as gone."""
    config = make_config(tmp_path)
    async with Daemon(config) as daemon:
        daemon.heartbeat.interval = 0.05
        await daemon.heartbeat.stop()
        await daemon.heartbeat.start()
        async with daemon.db.read() as store:
            [first] = await DaemonRepository(store.conn).list()
        for _ in range(100):
            await asyncio.sleep(0.05)
            async with daemon.db.read() as store:
                [now] = await DaemonRepository(store.conn).list()
            if now.last_seen > first.last_seen:
                break
    assert now.last_seen > first.last_seen and now.state(utc_now()) == "running"


def test_backup_on_postgresql_gives_the_pg_dump_command(tmp_path: Path) -> None:
    """``backup`` on a PostgreSQL desk copies nothing: it exits 1 with the exact pg_dump command for the configured
    database and the password file."""
    secret = tmp_path / "db-password"
    secret.write_text("geheim\n", encoding="utf-8")
    path = tmp_path / "pg.toml"
    path.write_text('[storage]\ndatabase = "postgresql://desk@db.example:5433/support"\n'
                    f'password_file = "{secret}"\n', encoding="utf-8")
    result = cli("--config", str(path), "backup", str(tmp_path / "desk.dump"))
    assert result.returncode == 1 and not (tmp_path / "desk.dump").exists()
    assert "pg_dump" in result.stderr
    assert (f'PGPASSWORD="$(head -n 1 {secret})" pg_dump --format=custom --file {tmp_path / "desk.dump"} '
            "postgresql://desk@db.example:5433/support") in result.stderr
