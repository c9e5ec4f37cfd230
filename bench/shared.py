"""Benchmark: mails/s of one, two and three daemons on one PostgreSQL database, beside one daemon on SQLite.

Run: .venv/bin/python bench/shared.py [--mails 600] [--connections 8] [--daemons 1 2 3]

In one run it starts a private PostgreSQL cluster (tests/postgres.py: a
temporary folder, a free port, fsync off, as in the tests) and, for each set-up,
fresh ``mailticketd serve`` processes on a fresh database: SQLite with one
daemon, then PostgreSQL with each ``--daemons`` count.  The same mails (new
tickets from distinct senders, outgoing mail to a maildir) are sent over
``--connections`` SMTP sessions spread over the daemons, each session reused
for its share of the mails.  It prints accepted mails/s (start to the last
``250``) and end-to-end mails/s (start until every inbox row is done and no
outgoing mail is queued).  Everything shares the machine's cores: the client,
the daemons and the database server.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SUPPORT, TOKEN_SECRET, free_port, make_mail  # noqa: E402
from tests.postgres import Cluster  # noqa: E402
from tests.process import DaemonProcess  # noqa: E402


def config(folder: Path, database: str, mails: int) -> tuple[Path, int]:
    folder.mkdir(parents=True)
    port = free_port()
    path = folder / "mailticketd.toml"
    path.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nmax_connections = 1000\nmax_connections_per_client = 1000\n'
        f'[http]\nlisten = "127.0.0.1:0"\n'
        f'[mail]\naddresses = ["{SUPPORT}"]\ntoken_secrets = ["{TOKEN_SECRET}"]\n'
        f'[notify]\nmax_auto_replies_per_hour = {mails + 1}\n[inbox]\nmax_backlog = {mails + 1}\n'
        f'[storage]\ndatabase = "{database}"\n[outbound]\nmaildir = "{folder / "maildir"}"\n'
        '[log]\nformat = "json"\nlevel = "warning"\n', encoding="utf-8")
    return path, port


async def send_all(ports: list[int], mails: list[bytes], connections: int) -> float:
    """Send ``mails`` over ``connections`` sessions spread over ``ports``; returns the moment of the last 250."""
    shares = [mails[index::connections] for index in range(connections)]
    last = 0.0

    async def session(index: int, share: list[bytes]) -> None:
        nonlocal last
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[index % len(ports)], timeout=60) as client:
            for number, raw in enumerate(share):
                await client.sendmail(f"kunde{index}-{number}@customer.example", [SUPPORT], raw)
                last = max(last, time.monotonic())

    await asyncio.gather(*(session(index, share) for index, share in enumerate(shares)))
    return last


async def finished(database: str) -> bool:
    query = ("SELECT (SELECT count(*) FROM inbox WHERE status = 'pending'),"
             " (SELECT count(*) FROM outbox WHERE status = 'queued')")
    if database.startswith("postgresql://"):
        conn = await asyncpg.connect(database)
        try:
            pending, queued = await conn.fetchrow(query)
        finally:
            await conn.close()
    else:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as lite:
            pending, queued = lite.execute(query).fetchone()
    return not pending and not queued


async def measure(label: str, database: str, daemons: int, args: argparse.Namespace, root: Path) -> str:
    processes = []
    for index in range(daemons):
        path, port = config(root / f"{label}-{daemons}-{index}", database, args.mails)
        processes.append(DaemonProcess(path, port, path.parent / "daemon.log"))
    mails = [make_mail(f"kunde{index}@customer.example", subject=f"Server {index} down",
                       message_id=f"bench{index}@customer.example") for index in range(args.mails)]
    try:
        for process in processes:
            process.start()
        start = time.monotonic()
        accepted = await send_all([process.port for process in processes], mails, args.connections)
        while not await finished(database):
            if time.monotonic() - start > args.timeout:
                raise RuntimeError(f"{label} with {daemons}: not done after {args.timeout}s")
            await asyncio.sleep(0.1)
        done = time.monotonic()
    finally:
        for process in processes:
            if process.process is not None and process.process.poll() is None:
                process.terminate()
    return (f"| {label} | {daemons} | {args.mails / (accepted - start):.0f} | {args.mails / (done - start):.0f} |")


async def run(args: argparse.Namespace, cluster: Cluster) -> list[str]:
    rows = ["| database | daemons | accepted mails/s | end-to-end mails/s |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="mailticketd-bench-") as folder:
        root = Path(folder)
        rows.append(await measure("SQLite", str(root / "desk.sqlite3"), 1, args, root))
        print(rows[-1], flush=True)
        for daemons in args.daemons:
            rows.append(await measure("PostgreSQL", cluster.database(), daemons, args, root))
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=600)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    cluster = Cluster()
    try:
        cluster.start()
        rows = asyncio.run(run(args, cluster))
    finally:
        cluster.stop()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
