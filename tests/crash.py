"""SIGKILL the real daemon at random moments under SMTP load and check what survived.

Shared by ``tests/test_crash.py`` (a few kills) and ``bench/crash_loop.py``
(twenty and more).  Clients keep sending mail over SMTP from threads while the
daemon process is killed with SIGKILL and started again.  After every restart
and at the end the promises are checked:

- every mail that got a ``250`` is in the inbox, is exactly one article
  once its row is done, and at the end every row is done (never two
  articles, whichever moment the kill hit);
- no mail is an article twice, and no article appears that nobody sent;
- ``PRAGMA integrity_check`` says ``ok`` (SQLite), and no ticket number is handed out twice;
- every outgoing mail marked sent is in the maildir, and a mail delivered
  twice (same Message-ID to the same recipient) happens at most once per
  kill (only a send in flight at the kill can repeat).

The database is read through ``snapshot``, from an SQLite file (a ``Path``) or a PostgreSQL URL (a ``str``), so
``tests/crash_shared.py`` checks three daemons on one PostgreSQL with the same promises.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import random
import shutil
import smtplib
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import SUPPORT, make_mail
from tests.process import DaemonProcess, write_config

OPERATOR = "op@provider.example"

_EXTRA = (
    "retry_delay = 0.2\n\n"
    f'[operators]\naddresses = ["{OPERATOR}"]\n\n'
    "[notify]\nmax_auto_replies_per_hour = 1000000\n\n"
    "[log]\nformat = \"json\"\nlevel = \"warning\"\n"
)


@dataclass
class Load:
    """SMTP clients in threads, each sending one new mail after another until stopped."""

    port: int
    connections: int
    ports: tuple[int, ...] = ()  # several daemons: client i sends to ports[i % len(ports)]
    sent: set[str] = field(default_factory=set)  # every Message-ID whose DATA was started
    accepted: set[str] = field(default_factory=set)  # Message-IDs answered 250
    refused: Counter[str] = field(default_factory=Counter)  # other answers and broken connections
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.connections):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self.accepted)

    def _client(self, index: int) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                port = self.ports[index % len(self.ports)] if self.ports else self.port
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                    while not self._stop.is_set():
                        number += 1
                        self._send_one(client, index, number)
            except (OSError, smtplib.SMTPException) as error:
                with self._lock:
                    self.refused[type(error).__name__] += 1
                time.sleep(0.05)  # the daemon is down; try again soon

    def _send_one(self, client: smtplib.SMTP, index: int, number: int) -> None:
        message_id = f"crash-{index}-{number}@customer.example"
        sender = f"user{number % 25}-{index}@customer.example"
        raw = make_mail(sender, subject=f"de-fr-srv-{number % 10000:04d} Anfrage {index}/{number}",
                        body="Hallo,\nbitte prüfen.\n" * 5, message_id=message_id)
        with self._lock:
            self.sent.add(message_id)
        try:
            client.sendmail(sender, [SUPPORT], raw)
        except smtplib.SMTPResponseException as error:
            with self._lock:
                self.refused[str(error.smtp_code)] += 1
            return
        with self._lock:
            self.accepted.add(message_id)


@dataclass
class Report:
    kills: int = 0
    kills_with_work_in_flight: int = 0  # inbox or outbox rows waiting at the moment of the kill
    restart_seconds: list[float] = field(default_factory=list)
    checks: int = 0

    def line(self, load: Load, database: Path | str, maildir: Path, elapsed: float) -> str:
        outgoing = maildir_deliveries(maildir)
        duplicates = sum(count - 1 for count in outgoing.values())
        articles = snapshot(database).articles_total
        refused = ", ".join(f"{name} {count}" for name, count in sorted(load.refused.items())) or "none"
        return (f"kills: {self.kills} ({self.kills_with_work_in_flight} with mail waiting in inbox or outbox), "
                f"checks passed: {self.checks}\n"
                f"mails sent: {len(load.sent)}, answered 250: {len(load.accepted)}, "
                f"not accepted: {refused}\n"
                f"articles: {articles}, outgoing mails delivered: {sum(outgoing.values())}, "
                f"delivered twice: {duplicates} (allowed: at most {self.kills})\n"
                f"restart until SMTP answers: median {sorted(self.restart_seconds)[len(self.restart_seconds) // 2]:.2f} s, "
                f"max {max(self.restart_seconds):.2f} s; total {elapsed:.1f} s")


def maildir_deliveries(maildir: Path) -> Counter[tuple[str, str]]:
    """(Message-ID, Delivered-To) → how many files in the maildir carry it."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    found: Counter[tuple[str, str]] = Counter()
    for folder in ("new", "cur"):
        if not (maildir / folder).is_dir():
            continue
        for path in (maildir / folder).iterdir():
            headers = parser.parsebytes(path.read_bytes())
            found[(str(headers["Message-ID"]).strip().strip("<>"), str(headers["Delivered-To"]).strip().lower())] += 1
    return found


@dataclass
class Snapshot:
    """What the checks read of the database, in one consistent read."""

    integrity: list[tuple[Any, ...]]  # SQLite's integrity_check; [("ok",)] on PostgreSQL (the server keeps it)
    inbox: Counter[str]  # Message-ID → inbox rows
    articles: Counter[str]  # Message-ID → articles of kind mail
    statuses: dict[str, int]
    done: set[str]
    outbox: list[tuple[str, str, str]]  # message_id, rcpt_to, status
    numbers_twice: list[int]  # ticket numbers held by more than one ticket
    articles_total: int
    waiting: tuple[int, int]  # pending inbox rows, queued outbox rows


_QUERIES = {
    "inbox": "SELECT message_id FROM inbox",
    "articles": "SELECT message_id FROM articles WHERE kind = 'mail'",
    "statuses": "SELECT status, count(*) FROM inbox GROUP BY status",
    "done": "SELECT message_id FROM inbox WHERE status = 'done'",
    "outbox": "SELECT message_id, rcpt_to, status FROM outbox",
    "numbers_twice": "SELECT number FROM tickets GROUP BY number HAVING count(*) > 1",
    "articles_total": "SELECT count(*) FROM articles",
    "pending": "SELECT count(*) FROM inbox WHERE status = 'pending'",
    "queued": "SELECT count(*) FROM outbox WHERE status = 'queued'",
}


def snapshot(database: Path | str) -> Snapshot:
    """One consistent read of an SQLite file (``Path``) or a PostgreSQL database (URL)."""
    if isinstance(database, Path):
        with sqlite3.connect(database, timeout=30) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchall()
            conn.execute("BEGIN")  # one snapshot for all reads: the restarted daemon commits meanwhile
            rows = {name: [tuple(row) for row in conn.execute(sql).fetchall()] for name, sql in _QUERIES.items()}
    else:
        integrity = [("ok",)]
        rows = asyncio.run(_postgres_rows(database))
    return Snapshot(
        integrity=integrity, inbox=Counter(row[0] for row in rows["inbox"]),
        articles=Counter(row[0] for row in rows["articles"]),
        statuses={str(row[0]): int(row[1]) for row in rows["statuses"]}, done={row[0] for row in rows["done"]},
        outbox=[(str(row[0]), str(row[1]), str(row[2])) for row in rows["outbox"]],
        numbers_twice=[int(row[0]) for row in rows["numbers_twice"]], articles_total=int(rows["articles_total"][0][0]),
        waiting=(int(rows["pending"][0][0]), int(rows["queued"][0][0])),
    )


async def _postgres_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=30)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return {name: [tuple(row) for row in await conn.fetch(sql)] for name, sql in _QUERIES.items()}
    finally:
        await conn.close()


def check(database: Path | str, maildir: Path, load: Load, accepted: set[str], kills: int, *, final: bool) -> None:
    """The promises; ``final`` once everything is processed and sent."""
    found = snapshot(database)
    assert found.integrity == [("ok",)], found.integrity
    assert not found.numbers_twice, f"ticket numbers handed out twice: {found.numbers_twice}"
    inbox, articles, statuses, done, outbox = found.inbox, found.articles, found.statuses, found.done, found.outbox
    lost = accepted - set(inbox)
    assert not lost, f"{len(lost)} mails answered 250 are not in the inbox: {sorted(lost)[:5]}"
    twice = {mid: (inbox[mid], articles[mid]) for mid in inbox | articles if inbox[mid] > 1 or articles[mid] > 1}
    assert not twice, f"stored or processed twice (inbox rows, articles): {twice}"
    unprocessed = {mid for mid in accepted & done if articles[mid] != 1}
    assert not unprocessed, f"marked done but not exactly one article: {sorted(unprocessed)[:5]}"
    strangers = set(articles) - load.sent
    assert not strangers, f"articles nobody sent: {strangers}"
    deliveries = maildir_deliveries(maildir)
    duplicates = {key: n for key, n in deliveries.items() if n > 1}
    assert sum(n - 1 for n in duplicates.values()) <= kills, f"more duplicates than kills ({kills}): {duplicates}"
    if not final:
        return
    assert statuses == {"done": sum(inbox.values())}, f"inbox not all done: {statuses}"
    missing = accepted - set(articles)
    assert not missing, f"{len(missing)} mails answered 250 never became an article: {sorted(missing)[:5]}"
    undelivered = [(mid, rcpt) for mid, rcpt, status in outbox
                   if status != "sent" or deliveries[(mid.strip("<>"), rcpt.lower())] == 0]
    assert not undelivered, f"outgoing mail not delivered: {undelivered[:5]}"


def wait_until_quiet(database: Path | str, timeout: float) -> None:
    """Until nothing waits in inbox or outbox."""
    deadline = time.monotonic() + timeout
    waiting: tuple[int, int] = (-1, -1)
    while time.monotonic() < deadline:
        waiting = work_in_flight(database)
        if waiting == (0, 0):
            return
        time.sleep(0.2)
    raise AssertionError(f"still waiting after {timeout}s (inbox, outbox): {waiting}")


def work_in_flight(database: Path | str) -> tuple[int, int]:
    return snapshot(database).waiting


def kill_and_check(daemon: DaemonProcess, database: Path | str, maildir: Path, load: Load, report: Report,
                   say: object, label: str = "") -> None:
    """One round: SIGKILL ``daemon``, start it again and check every promise on what was accepted so far."""
    daemon.kill()
    report.kills += 1
    if work_in_flight(database) != (0, 0):
        report.kills_with_work_in_flight += 1
    accepted = load.snapshot()
    restarted = time.monotonic()
    daemon.start()
    report.restart_seconds.append(time.monotonic() - restarted)
    check(database, maildir, load, accepted, report.kills, final=False)
    report.checks += 1
    if callable(say):
        say(f"kill {report.kills}{label}: {len(accepted)} accepted so far, checks ok")


def crash_loop(folder: Path, *, kills: int, connections: int = 3, seed: int | None = None,
               min_gap: float = 0.3, max_gap: float = 2.0, settle_timeout: float = 300.0,
               say: object = None) -> str:
    """Run the loop in ``folder``; raise AssertionError on a broken promise; return the summary."""
    chooser = random.Random(seed)
    config, port = write_config(folder, _EXTRA)
    # The outbox worker looks often, so that kills also land between a send and its mark.
    config.write_text(config.read_text().replace("[outbound]\n", "[outbound]\npoll_interval = 0.2\n"))
    database, maildir = folder / "db.sqlite3", folder / "maildir"
    daemon = DaemonProcess(config, port, folder / "daemon.log")
    report = Report()
    started = time.monotonic()
    daemon.start()
    load = Load(port, connections)
    load.start()
    try:
        for _ in range(kills):
            time.sleep(chooser.uniform(min_gap, max_gap))
            kill_and_check(daemon, database, maildir, load, report, say)
        load.stop()
        wait_until_quiet(database, settle_timeout)
        assert daemon.terminate() == 0
        check(database, maildir, load, load.snapshot(), report.kills, final=True)
        report.checks += 1
    finally:
        load.stop()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
    return report.line(load, database, maildir, time.monotonic() - started)


def loop_command(doc: str, *, prefix: str, keep_help: str,
                 loop: Callable[[Path, argparse.Namespace, int, Callable[[str], None]], str]) -> None:
    """The command line both crash-loop benchmarks share: read the options, print the seed, run ``loop`` in a new
    folder, name a broken promise (exit 1, files kept), print the summary, keep or remove the files."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill moments (printed)")
    parser.add_argument("--keep", action="store_true", help=keep_help)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed: {seed}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        summary = loop(folder, args, seed, lambda line: print(line, flush=True))
    except AssertionError as broken:
        print(f"PROMISE BROKEN: {broken}\nfiles kept in {folder}", flush=True)
        sys.exit(1)
    print(summary)
    if args.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder)
