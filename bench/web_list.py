"""Benchmark: the helpdesk's ticket list for an organisation with 10 and with 10,000 tickets.

Run: .venv/bin/python bench/web_list.py [--sizes 10 10000] [--requests 30]

For each size it fills a fresh SQLite database directly (tickets, participants,
a VM link each), starts the daemon in-process, logs a manager in over HTTP and
times the first list page, a filtered page, a subject search and the last page.
The list is paged (50 a page) and its queries use indexes, so the first page
should cost about the same at any size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailticketd.app import Daemon  # noqa: E402
from mailticketd.clock import iso, utc_now  # noqa: E402
from mailticketd.logs import setup_logging  # noqa: E402
from tests.helpdesk import MANAGER, browserless, people  # noqa: E402
from tests.helpers import make_config  # noqa: E402


async def fill(daemon: Daemon, organisation_id: int, count: int) -> None:
    async with daemon.db.transaction() as store:
        manager = await store.users.by_address(MANAGER)
        assert manager is not None
        now = iso(utc_now())
        await store.conn.executemany(
            "INSERT INTO tickets (number, subject, status, organisation_id, requester_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(10000 + i, f"Anfrage {i} zu de-fr-srv-{i % 10000:04d}", ("open", "pending", "closed")[i % 3],
              organisation_id, manager.id, now, now) for i in range(count)])
        await store.conn.execute(
            "INSERT INTO participants (ticket_id, user_id, role, added_at) SELECT id, ?, 'requester', ? FROM tickets",
            (manager.id, now))
        await store.conn.execute(
            "INSERT INTO ticket_vms (ticket_id, name, vm_id, added_at) SELECT id, 'de-fr-srv-0815',"
            " (SELECT id FROM vms WHERE name = 'de-fr-srv-0815'), ? FROM tickets", (now,))


async def measure(size: int, requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        async with Daemon(make_config(Path(folder))) as daemon:
            found = await people(daemon)
            await fill(daemon, found.organisation_id, size)
            last = max(1, -(-size // 50))
            paths = {"first page": "/tickets", "waiting": "/tickets?status=waiting",
                     "search": "/tickets?q=Anfrage+7", f"last page": f"/tickets?page={last}"}
            result = {}
            async with browserless(daemon, address=MANAGER) as client:
                for label, path in paths.items():
                    times = []
                    for _ in range(requests):
                        started = time.perf_counter()
                        status, _page = await client.get(path)
                        times.append(time.perf_counter() - started)
                        assert status == 200
                    result[label] = statistics.median(times) * 1000
            return result


async def main(sizes: list[int], requests: int) -> None:
    setup_logging("console", "warning")
    results = {size: await measure(size, requests) for size in sizes}
    labels = list(next(iter(results.values())))
    print(f"{'tickets':>8} " + " ".join(f"{label:>12}" for label in labels) + "   (median ms per page)")
    for size, timings in results.items():
        print(f"{size:>8} " + " ".join(f"{timings[label]:>12.1f}" for label in labels))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 10000])
    parser.add_argument("--requests", type=int, default=30)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sizes, arguments.requests))
