"""Benchmark: mails/s with one, two and three daemons on one PostgreSQL against one daemon on SQLite, in one run.

Run: .venv/bin/python bench/shared_load.py [--mails 1500] [--processes 6] [--connections 2] [--directory 1000]
                                           [--daemons 1 2 3] [--root CHECKOUT]

The mails and the client processes are bench/load.py's (bench/load_clients.py: German support mails of about
4 KB, 5 % with a 200 KB attachment, about 30 % replies threading by In-Reply-To), the same for every
configuration: ``--processes`` client processes with ``--connections`` sessions each, reusing a session for up to
100 mails; client process i sends to daemon i mod n, so with three daemons each gets the mails of two processes.
Each configuration starts on a fresh database holding the same directory (bench/population.py, copied into
PostgreSQL with ``mailticketd migrate-database``); PostgreSQL is a private cluster (``initdb`` in a temporary
folder, as the tests use, with ``fsync`` on).  Every daemon is ``mailticketd serve`` as a process of its own.

It prints one table: accepted mails/s (from the start to the last ``250``), the p50/p99 latency of a
transaction, and end-to-end mails/s, from the first ``250`` until every inbox row is done and every outgoing mail
it caused is written.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from load import _percentile, daemon_config, free_port, merge, run_clients  # noqa: E402
from population import fill, organisations_for  # noqa: E402

from tests.postgres import Cluster, available  # noqa: E402
from tests.process import wait_for_banner  # noqa: E402

TOKEN_SECRET = "bench-shared-secret-0123456789abcdef"


@dataclass
class Row:
    name: str
    mails: int
    accepted_per_s: float
    p50: float
    p99: float
    end_to_end_per_s: float
    errors: dict[str, int]


def _waiting_sqlite(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
                                " + (SELECT count(*) FROM outbox WHERE status = 'queued')").fetchone()[0])


async def _waiting_postgres(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
                                       " + (SELECT count(*) FROM outbox WHERE status = 'queued')"))
    finally:
        await conn.close()


def _waiting(database: Path | str) -> int:
    return _waiting_sqlite(database) if isinstance(database, Path) else asyncio.run(_waiting_postgres(database))


def _config(folder: Path, port: int, database: Path | str, mails: int) -> Path:
    """bench/load.py's daemon config, on ``database`` (a file or a PostgreSQL URL with the shared token secret)."""
    path = daemon_config(folder, port, Path("placeholder.sqlite3"), mails)
    text = path.read_text(encoding="utf-8").replace('database = "placeholder.sqlite3"', f'database = "{database}"')
    if isinstance(database, str):
        text = text.replace("[mail]\n", f'[mail]\ntoken_secrets = ["{TOKEN_SECRET}"]\n')
    path.write_text(text, encoding="utf-8")
    return path


def measure(args: argparse.Namespace, name: str, database: Path | str, daemons: int, folder: Path) -> Row:
    processes = []
    ports = []
    try:
        for index in range(daemons):
            own = folder / f"d{index}"
            own.mkdir(parents=True)
            port = free_port()
            command = [sys.executable, "-m", "mailticketd", "--config",
                       str(_config(own, port, database, args.mails)), "serve"]
            with (own / "server.log").open("wb") as log:
                processes.append(subprocess.Popen(command, cwd=args.root, stdout=subprocess.DEVNULL, stderr=log))
            wait_for_banner(port, processes[-1])
            ports.append(port)
        started, figures = run_clients(args, ports, True, None)
        latencies, done_at, errors = merge(figures)
        deadline = time.monotonic() + args.timeout
        while _waiting(database):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: not done after {args.timeout} s")
            time.sleep(0.05)
        end_to_end = len(done_at) / (time.monotonic() - min(done_at))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=120)
    accepted = len(done_at) / (max(done_at) - started)
    return Row(name, len(done_at), accepted, _percentile(latencies, 0.5), _percentile(latencies, 0.99),
               end_to_end, errors)


def _move(root: Path, source: Path, url: str, folder: Path) -> None:
    """The directory into PostgreSQL with the daemon's own command."""
    config = folder / "move.toml"
    config.write_text(f'[storage]\ndatabase = "{source}"\n', encoding="utf-8")
    subprocess.run([sys.executable, "-m", "mailticketd", "--config", str(config), "migrate-database", "--to", url,
                    "--json"], cwd=root, check=True, capture_output=True, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1500, help="mails per configuration")
    parser.add_argument("--processes", type=int, default=6, help="client processes (the same for every configuration)")
    parser.add_argument("--connections", type=int, default=2, help="sessions per client process")
    parser.add_argument("--directory", type=int, default=1000, help="tickets whose directory is loaded first")
    parser.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 3], help="daemon counts on PostgreSQL")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds at most per phase")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose daemon is measured")
    args = parser.parse_args()
    if not available():
        sys.exit("PostgreSQL is not installed (tests/setup-system.sh installs it)")
    print(f"mails: {args.mails} per configuration, {args.processes} client processes x {args.connections} sessions"
          f" (process i to daemon i mod n), 5 % with 200 KB attachments, ~30 % replies; directory of "
          f"{organisations_for(args.directory)} organisations", flush=True)
    cluster = Cluster()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mailticketd-shared-load-") as name:
        folder = Path(name)
        directory = folder / "directory.sqlite3"
        fill(directory, args.directory, root=args.root)
        cluster.start()
        cluster.psql("ALTER SYSTEM SET fsync = on")  # the tests' cluster runs without; a benchmark must not
        cluster.psql("ALTER SYSTEM SET full_page_writes = on")
        cluster.psql("SELECT pg_reload_conf()")
        try:
            sqlite = folder / "sqlite" / "db.sqlite3"
            sqlite.parent.mkdir()
            shutil.copy(directory, sqlite)
            rows.append(measure(args, "sqlite, 1 daemon", sqlite, 1, sqlite.parent))
            print(f"done: {rows[-1].name}", flush=True)
            for count in args.daemons:
                url = cluster.empty_database()
                run = folder / f"pg{count}"
                run.mkdir()
                _move(args.root, directory, url, run)
                rows.append(measure(args, f"postgresql, {count} daemon{'s' if count > 1 else ''}", url, count, run))
                print(f"done: {rows[-1].name}", flush=True)
        finally:
            cluster.stop()
    print(f"{'database':<24} {'mails':>6} {'accepted/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'end-to-end/s':>12}")
    for row in rows:
        print(f"{row.name:<24} {row.mails:>6} {row.accepted_per_s:>10.0f} {row.p50:>7.1f} {row.p99:>7.1f}"
              f" {row.end_to_end_per_s:>12.0f}")
    for row in rows:
        if row.errors:
            print(f"not accepted ({row.name}): " + ", ".join(f"{k} {v}" for k, v in row.errors.items()))


if __name__ == "__main__":
    main()
