"""Benchmark: the delivery worker's memory when many big outgoing mails are due at once.

Run: .venv/bin/python bench/outbox_memory.py [--mails 32] [--megabytes 3] [--root CHECKOUT]

An operator's notice quotes all that a customer wrote, so a storm of long mails
queues as many long notices.  This puts ``--mails`` outgoing mails of
``--megabytes`` each into the outbox of a fresh database (in this process, with
``--root``'s code), then lets the delivery worker write all of them into a
maildir, and prints how much the process's peak RSS grew meanwhile, over the
peak the queueing reached: the worker claims the next batch before it lets the
last one go, so that is about two claims' worth.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
from pathlib import Path


async def _run(root: Path, mails: int, megabytes: float) -> None:
    sys.path.insert(0, str(root))  # the measured checkout's code first
    from mailticketd.outbox.transports import MaildirTransport
    from mailticketd.outbox.worker import DeliveryWorker
    from mailticketd.storage import database_for
    from tests.helpers import SUPPORT, make_config

    with tempfile.TemporaryDirectory() as folder:
        config = make_config(Path(folder))
        async with database_for(config.storage) as db:
            raw = (b"From: support@example.net\r\nTo: op@provider.example\r\nSubject: notice\r\n\r\n"
                   + b"x" * int(megabytes * 1_000_000) + b"\r\n")
            for n in range(mails):
                async with db.transaction() as store:
                    await store.outbox.enqueue(ticket_id=None, kind="operator-notice", mail_from=SUPPORT,
                                               rcpt_to=f"op{n}@provider.example", message_id=f"n{n}@example.net",
                                               raw=raw)
            del raw
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            sent = await DeliveryWorker(db, config, MaildirTransport(Path(folder) / "maildir")).drain()
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"code: {root}")
    print(f"{sent} mails of {megabytes:g} MB delivered; peak RSS grew by {(after - before) / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=32)
    parser.add_argument("--megabytes", type=float, default=3.0)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    asyncio.run(_run(args.root.resolve(), args.mails, args.megabytes))


if __name__ == "__main__":
    main()
