"""Benchmark: the pipeline and the delivery alone, in one process, without SMTP or client processes.

Run: .venv/bin/python bench/drain.py [--mails 500] [--profile FILE] [--root CHECKOUT]

It opens a fresh database with the daemon's parts (``Daemon`` built, not
started: no listener), puts ``--mails`` of ``bench/accept_ratio.py``'s 4 KB
German support mails into the inbox, then times ``InboxWorker.drain()`` (parse
in the pool, pipeline, letters, commit) and ``DeliveryWorker.drain()`` (into a
maildir) one after the other: wall time and the process's own CPU a mail (the
parse processes not counted).  Quicker and steadier than the SMTP benchmarks
for judging a change to processing; ``--profile FILE`` writes a cProfile of
both drains (the event loop's thread only).
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


async def _drain(root: Path, mails: int, profile: Path | None) -> None:
    sys.path.insert(0, str(root))  # the daemon's code first: the helpers below put this checkout on the path
    from mailticketd.app import Daemon
    from mailticketd.config import load_config
    from mailticketd.logs import setup_logging

    sys.path.insert(0, str(HERE))
    from accept_ratio import SUPPORT, make_mails
    from load import daemon_config

    with tempfile.TemporaryDirectory() as folder:
        config = load_config(daemon_config(Path(folder), 0, Path(folder) / "drain.sqlite3", mails))
        setup_logging(config.log.format, "warning")
        daemon = Daemon(config)
        await daemon.db.open()
        try:
            async with daemon.db.transaction() as store:
                for raw in make_mails(mails, seed=7):
                    await store.inbox.add(peer="127.0.0.1", mail_from="kunde@firma.example", rcpt_tos=[SUPPORT],
                                          message_id=None, raw=raw)
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
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose code is measured")
    args = parser.parse_args()
    asyncio.run(_drain(args.root.resolve(), args.mails, args.profile))


if __name__ == "__main__":
    main()
