"""Benchmark: how fast the daemon accepts mail over SMTP and turns it into tickets.

Run: .venv/bin/python bench/ingest.py [--mails 500] [--connections 4]

It starts the daemon in-process on a temporary SQLite file (synchronous=FULL,
as in production), sends the mails over loopback from several connections,
and reports the rate of ``250`` answers and the rate at which the inbox
worker processes them into tickets (outbound mail goes to a maildir).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailticketd.app import Daemon  # noqa: E402
from mailticketd.config import load_config  # noqa: E402
from mailticketd.logs import setup_logging  # noqa: E402
from tests.helpers import make_mail  # noqa: E402


async def _client(port: int, mails: list[bytes], latencies: list[float]) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as client:
        for raw in mails:
            started = time.perf_counter()
            await client.sendmail("kunde@customer.example", ["support@example.net"], raw)
            latencies.append(time.perf_counter() - started)


async def run(count: int, connections: int) -> None:
    setup_logging("console", "warning")
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(None, {
            "smtp": {"listen": "127.0.0.1:0"},
            "http": {"listen": "127.0.0.1:0"},
            "mail": {"addresses": ["support@example.net"]},
            "storage": {"database": f"{folder}/bench.sqlite3"},
            "outbound": {"maildir": f"{folder}/maildir"},
            "operators": {"addresses": ["op@provider.example"]},
            "inbox": {"max_backlog": count + 1},
            "notify": {"max_auto_replies_per_hour": count + 1},
            "log": {"level": "warning"},
        })
        mails = [make_mail(f"user{i % 50}@customer.example", subject=f"de-fr-srv-{i % 10000:04d} Anfrage {i}",
                           body="Hallo,\nbitte prüfen.\n" * 20) for i in range(count)]
        async with Daemon(config) as daemon:
            latencies: list[float] = []
            started = time.perf_counter()
            batches = [mails[i::connections] for i in range(connections)]
            await asyncio.gather(*(_client(daemon.smtp_port, batch, latencies) for batch in batches))
            accepted = time.perf_counter() - started
            while True:
                async with daemon.db.read() as store:
                    if not await store.inbox.backlog():
                        break
                await asyncio.sleep(0.1)
            processed = time.perf_counter() - started
        latencies.sort()
        print(f"mails: {count}, connections: {connections}")
        print(f"accepted (250) in {accepted:.2f} s: {count / accepted:.0f} mails/s")
        print(f"SMTP transaction latency: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms")
        print(f"all processed into tickets in {processed:.2f} s: {count / processed:.0f} mails/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.mails, args.connections))


if __name__ == "__main__":
    main()
