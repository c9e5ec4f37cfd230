"""Benchmark: the cost of one mail with 1,000, 100,000 and 1,000,000 tickets in the database.

Run: .venv/bin/python bench/scale.py [--sizes 1000 100000 1000000] [--mails 100] [--root CHECKOUT]

For each size, bench/population.py fills a fresh database (``mailticketd
migrate``, then executemany: organisations, people, VMs, tickets with
participants, articles, inbox rows, Message-IDs and sent mails), then
``mailticketd serve`` runs on it as a process of its own and gets, over one
SMTP session on 127.0.0.1, three bursts of ``--mails`` mails each, after a
warm-up of five:

* new mails from known customers (a VM in the subject, some CCs);
* replies threaded by the subject tag of an open ticket of the history;
* replies threaded by In-Reply-To (the acknowledgement the ticket got), no tag.

A burst's cost per mail is the time from its first ``250`` until every inbox row
is done and every outgoing mail is written, divided by the mails (the inbox
worker is the slower side, so this is its cost per mail).  The number of tickets
after each burst is checked: new mails open tickets, replies open none.
"""

from __future__ import annotations

import argparse
import random
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import daemon_config, free_port  # noqa: E402
from population import HISTORY, OPEN_FOR, fill, message_ids_of, organisations_for, requester_of, ticket_number  # noqa: E402
from support_mail import SUPPORT, MailMaker, address, tag, vm_name  # noqa: E402
from tests.process import wait_for_banner  # noqa: E402

HERE = Path(__file__).resolve().parent
KINDS = ("new", "reply by tag", "reply by In-Reply-To")


def _count(database: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _wait_finished(database: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while _count(database, "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
                           " + (SELECT count(*) FROM outbox WHERE status = 'queued')"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done after {timeout} s")
        time.sleep(0.02)
    return time.monotonic()


def _mails(kind: str, size: int, count: int, seed: int) -> list[tuple[str, bytes]]:
    """``count`` mails of ``kind`` with their envelope senders."""
    organisations = organisations_for(size)
    maker = MailMaker(organisations, seed, attachment_share=0.0)
    pick = random.Random(seed)
    first_open = int(size * (1 - OPEN_FOR / HISTORY)) + 1
    found: list[tuple[str, bytes]] = []
    for _ in range(count):
        if kind == "new":
            raw, sent = maker.new()
            found.append((address(sent.organisation, sent.person), raw))
            continue
        index = pick.randrange(first_open, size)
        organisation, person = requester_of(index, organisations)
        subject = f"{vm_name(organisation, index % 3)} Anfrage {index}"
        if kind == "reply by tag":
            raw = maker.to_ticket(organisation, person, f"AW: {tag(ticket_number(index))} {subject}")
        else:
            raw = maker.to_ticket(organisation, person, f"AW: {subject}", in_reply_to=message_ids_of(index)[1])
        found.append((address(organisation, person), raw))
    return found


def _burst(port: int, database: Path, mails: list[tuple[str, bytes]], timeout: float) -> float:
    """Send ``mails`` over one session; seconds per mail from the first 250 until all is processed."""
    first = None
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for sender, raw in mails:
            client.sendmail(sender, [SUPPORT], raw)
            first = first or time.monotonic()
    assert first is not None
    return (_wait_finished(database, timeout) - first) / len(mails)


def measure(size: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    folder.mkdir()
    database = folder / "db.sqlite3"
    loaded = fill(database, size, root=args.root)
    port = free_port()
    config = daemon_config(folder, port, database, 10 * args.mails + 10)
    figures = {"load s": loaded["seconds"], "MB": loaded["megabytes"]}
    with (folder / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"],
                                  cwd=args.root, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_banner(port, daemon, timeout=120)
        _burst(port, database, _mails("new", size, 5, seed=1), args.timeout)  # warm-up
        for number, kind in enumerate(KINDS):
            tickets = _count(database, "SELECT count(*) FROM tickets")
            figures[kind] = _burst(port, database, _mails(kind, size, args.mails, seed=10 + number), args.timeout)
            opened = _count(database, "SELECT count(*) FROM tickets") - tickets
            expected = args.mails if kind == "new" else 0
            if opened != expected:
                raise RuntimeError(f"{kind}: {opened} tickets opened, expected {expected} (see {folder})")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    database.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000, 1000000])
    parser.add_argument("--mails", type=int, default=100, help="mails per burst")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds at most per burst")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose daemon is measured")
    args = parser.parse_args()
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mailticketd-scale-") as folder:
        for size in args.sizes:
            results[size] = measure(size, args, Path(folder) / str(size))
            print(f"{size:,} tickets measured", file=sys.stderr, flush=True)
    smallest = results[args.sizes[0]]
    print(f"{'tickets':>10} {'load s':>7} {'DB MB':>6}" + "".join(f" {kind + ' ms':>26}" for kind in KINDS))
    for size, figures in results.items():
        cells = "".join(f" {figures[kind] * 1000:>17.1f} ({figures[kind] / smallest[kind]:>4.2f}x)" for kind in KINDS)
        print(f"{size:>10,} {figures['load s']:>7.1f} {figures['MB']:>6.0f}{cells}")
    print(f"(ms per mail, from the first 250 of {args.mails} mails until all are processed and their mail written;"
          f" x: against {args.sizes[0]:,} tickets)")


if __name__ == "__main__":
    main()
