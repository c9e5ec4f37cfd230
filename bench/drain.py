"""Benchmark: the pipeline and the delivery alone, in one process, without SMTP or client processes.

Run: .venv/bin/python bench/drain.py [--mails 500] [--load-mails] [--profile FILE] [--root CHECKOUT]

It opens a fresh database with the daemon's parts (``Daemon`` built, not
started: no listener), puts ``--mails`` of ``bench/accept_ratio.py``'s 4 KB
German support mails into the inbox, then times ``InboxWorker.drain()`` (parse
in the pool, pipeline, letters, commit) and ``DeliveryWorker.drain()`` (into a
maildir) one after the other: wall time and the process's own CPU a mail (the
parse processes not counted).  Quicker and steadier than the SMTP benchmarks
for judging a change to processing; ``--profile FILE`` writes a cProfile of
both drains (the event loop's thread only).  ``--load-mails`` takes
``bench/load.py``'s mails instead, from known customers of a directory of
1,000 tickets (bench/population.py): about 30 % replies quoting what they
answer, a CC in one of five, 5 % with a 200 KB attachment.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


async def _drain(root: Path, mails: int, profile: Path | None, load_mails: bool) -> None:
    sys.path.insert(0, str(root))  # the daemon's code first: the helpers below put this checkout on the path
    from mailticketd.app import Daemon
    from mailticketd.config import load_config
    from mailticketd.logs import setup_logging

    sys.path.insert(0, str(HERE))
    from accept_ratio import SUPPORT, make_mails
    from load import daemon_config
    from load_clients import build_plan
    from population import fill

    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "drain.sqlite3"
        if load_mails:
            fill(database, 1000, root=root)
            plan = build_plan(mails, 20, seed=1000)
            # A reply's subject carries a mark the load clients replace with the ticket's tag: here, nothing.
            queued = [(sender, raw.replace(b"XTAGX ", b"").replace(b"XTAGX_", b""))
                      for raw, sender in zip(plan.raws, plan.senders)]
        else:
            queued = [("kunde@firma.example", raw) for raw in make_mails(mails, seed=7)]
        config = load_config(daemon_config(Path(folder), 0, database, mails))
        setup_logging(config.log.format, "warning")
        daemon = Daemon(config)
        await daemon.db.open()
        try:
            async with daemon.db.transaction() as store:
                for sender, raw in queued:
                    await store.inbox.add(peer="127.0.0.1", mail_from=sender, rcpt_tos=[SUPPORT], message_id=None,
                                          raw=raw)
            await daemon.worker.preparer.warm()  # the pool is up, as in a daemon that runs
            profiler = cProfile.Profile() if profile else None
            figures = []
            for name, drain in (("inbox", daemon.worker.drain), ("delivery", daemon.delivery.drain)):
                wall, cpu = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                count = await drain()
                if profiler:
                    profiler.disable()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                figures.append((name, count, wall, cpu))
            await daemon.worker.close()
        finally:
            await daemon.db.close()
    print(f"code: {Path(sys.modules['mailticketd'].__file__ or '').parent.parent}")
    for name, count, wall, cpu in figures:
        print(f"{name:<9}{count:>6} rows  {wall / count * 1000:7.2f} ms wall a row  {cpu / count * 1000:7.2f} ms CPU a "
              "row (this process)")
    if profiler and profile:
        profiler.dump_stats(profile)
        print(f"profile: {profile} (python -m pstats {profile})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--load-mails", action="store_true", help="bench/load.py's mails from known customers")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose code is measured")
    args = parser.parse_args()
    asyncio.run(_drain(args.root.resolve(), args.mails, args.profile, args.load_mails))


if __name__ == "__main__":
    main()
