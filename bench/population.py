"""Fill a fresh database directly with a directory and a history of tickets, for the benchmarks.

Run: .venv/bin/python bench/population.py DATABASE [--tickets 100000]

The schema comes from ``mailticketd migrate`` (so it is exactly the daemon's);
the rows are written with ``executemany`` on a plain sqlite3 connection,
with the secondary indexes dropped during the load and built again after it
(sorted builds are far faster than a million random inserts).  For ``N``
tickets it writes ``N / 50`` organisations (at least 20) with five people and
three VMs each (``bench/support_mail.py`` names them), and per ticket: one
requester and every third ticket a CC, a linked VM, the customer's mail and
the operator's answer (articles), their inbox row, three Message-IDs (the mail,
the acknowledgement, the answer) and the two outgoing mails as sent.  Tickets
spread over three years; those of the last 30 days are open, the rest closed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support_mail import (FIRST_NUMBER, OPERATOR, PEOPLE_PER_ORGANISATION, SUPPORT,  # noqa: E402
                          VMS_PER_ORGANISATION, address, organisation_name, person_name, vm_name)

ROOT = Path(__file__).resolve().parents[1]
HISTORY = timedelta(days=3 * 365)
OPEN_FOR = timedelta(days=30)
CHUNK = 20000


def organisations_for(tickets: int) -> int:
    return max(20, tickets // 50)


def migrate(database: Path, root: Path = ROOT) -> None:
    """Create the daemon's schema with its own command."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "mailticketd.toml"
        config.write_text(f'[storage]\ndatabase = "{database}"\n', encoding="utf-8")
        subprocess.run([sys.executable, "-m", "mailticketd", "--config", str(config), "migrate"], cwd=root,
                       check=True, capture_output=True, timeout=120)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _chunks(rows: Iterator[tuple[object, ...]]) -> Iterator[list[tuple[object, ...]]]:
    chunk: list[tuple[object, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ticket_number(index: int) -> int:
    return FIRST_NUMBER + index


def requester_of(index: int, organisations: int) -> tuple[int, int]:
    """The (organisation, person) who opened ticket ``index`` (from 0)."""
    return index % organisations + 1, index // organisations % PEOPLE_PER_ORGANISATION


def message_ids_of(index: int) -> tuple[str, str, str]:
    """The customer's mail, the acknowledgement and the operator's answer of ticket ``index``."""
    return (f"h{index:08d}.in@mail.kunde.example", f"h{index:08d}.ack@example.net",
            f"h{index:08d}.reply@example.net")


def _directory(conn: sqlite3.Connection, organisations: int, now: str) -> None:
    conn.executemany("INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)",
                     [(o, organisation_name(o), now) for o in range(1, organisations + 1)])
    conn.executemany(
        "INSERT INTO users (id, address, name, organisation_id, status, role, authorised, monitoring_contact,"
        " verified_at, created_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
        [((o - 1) * PEOPLE_PER_ORGANISATION + p + 1, address(o, p), person_name(o, p), o,
          "manager" if p == 0 else "user", int(p == 0), int(p == 1), now, now)
         for o in range(1, organisations + 1) for p in range(PEOPLE_PER_ORGANISATION)])
    conn.execute(f"UPDATE organisations SET primary_contact_id = (id - 1) * {PEOPLE_PER_ORGANISATION} + 1")
    conn.executemany("INSERT INTO vms (name, organisation_id, created_at) VALUES (?, ?, ?)",
                     [(vm_name(o, v), o, now) for o in range(1, organisations + 1)
                      for v in range(VMS_PER_ORGANISATION)])


def _tickets(conn: sqlite3.Connection, count: int, organisations: int, now: datetime) -> None:
    def moment(index: int) -> datetime:
        return now - HISTORY * ((count - index) / count)

    def user_id(organisation: int, person: int) -> int:
        return (organisation - 1) * PEOPLE_PER_ORGANISATION + person + 1

    def tickets() -> Iterator[tuple[object, ...]]:
        for i in range(count):
            organisation, person = requester_of(i, organisations)
            at = moment(i)
            closed = at < now - OPEN_FOR
            yield (i + 1, ticket_number(i), f"{vm_name(organisation, i % VMS_PER_ORGANISATION)} Anfrage {i}",
                   "closed" if closed else "open", organisation, user_id(organisation, person), _iso(at),
                   _iso(at + timedelta(hours=2)), _iso(at + timedelta(days=1)) if closed else None)

    def participants() -> Iterator[tuple[object, ...]]:
        for i in range(count):
            organisation, person = requester_of(i, organisations)
            at = _iso(moment(i))
            yield (i + 1, user_id(organisation, person), "requester", at)
            if i % 3 == 0:
                yield (i + 1, user_id(organisation, (person + 1) % PEOPLE_PER_ORGANISATION), "cc", at)

    def vms() -> Iterator[tuple[object, ...]]:
        for i in range(count):
            organisation, _ = requester_of(i, organisations)
            vm = (organisation - 1) * VMS_PER_ORGANISATION + i % VMS_PER_ORGANISATION + 1
            yield (i + 1, vm_name(organisation, i % VMS_PER_ORGANISATION), vm, _iso(moment(i)))

    def inbox() -> Iterator[tuple[object, ...]]:
        raw = b"Subject: (kept short in the benchmark history)\r\n\r\n" + b"x" * 200
        for i in range(count):
            organisation, person = requester_of(i, organisations)
            at = _iso(moment(i))
            yield (i + 1, at, address(organisation, person), json.dumps([SUPPORT]), message_ids_of(i)[0],
                   len(raw), raw, "new", i + 1, at)

    text = ("Guten Tag, seit heute früh ist die VM nicht erreichbar. Bitte prüfen Sie das. " * 4).strip()
    answer = "Hallo, wir haben die VM neu gestartet, sie ist wieder erreichbar. Viele Grüße, Ihr Support"

    def articles() -> Iterator[tuple[object, ...]]:
        for i in range(count):
            organisation, person = requester_of(i, organisations)
            at, later = _iso(moment(i)), _iso(moment(i) + timedelta(hours=2))
            mail_id, _, reply_id = message_ids_of(i)
            subject = f"{vm_name(organisation, i % VMS_PER_ORGANISATION)} Anfrage {i}"
            yield (2 * i + 1, i + 1, i + 1, user_id(organisation, person), address(organisation, person),
                   "authorised" if person == 0 else "user", "mail", mail_id, subject, text, text, at)
            yield (2 * i + 2, i + 1, None, None, OPERATOR, "operator", "reply", reply_id, f"AW: {subject}", answer,
                   answer, later)

    def message_ids() -> Iterator[tuple[object, ...]]:
        for i in range(count):
            mail_id, ack_id, reply_id = message_ids_of(i)
            at, later = _iso(moment(i)), _iso(moment(i) + timedelta(hours=2))
            yield (mail_id, i + 1, 2 * i + 1, "in", at)
            yield (ack_id, i + 1, None, "out", at)
            yield (reply_id, i + 1, 2 * i + 2, "out", later)

    def outbox() -> Iterator[tuple[object, ...]]:
        raw = b"Subject: (kept short in the benchmark history)\r\n\r\n" + b"x" * 100
        for i in range(count):
            organisation, person = requester_of(i, organisations)
            _, ack_id, reply_id = message_ids_of(i)
            at, later = _iso(moment(i)), _iso(moment(i) + timedelta(hours=2))
            for kind, message_id, when in (("ack", ack_id, at), ("reply", reply_id, later)):
                yield (when, i + 1, kind, SUPPORT, address(organisation, person), message_id, raw, when, when)

    statements = {
        "INSERT INTO tickets (id, number, subject, status, organisation_id, requester_id, created_at, updated_at,"
        " closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)": tickets,
        "INSERT INTO participants (ticket_id, user_id, role, added_at) VALUES (?, ?, ?, ?)": participants,
        "INSERT INTO ticket_vms (ticket_id, name, vm_id, added_at) VALUES (?, ?, ?, ?)": vms,
        "INSERT INTO inbox (id, received_at, mail_from, rcpt_tos, message_id, size, raw, status, decision, ticket_id,"
        " processed_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, 1)": inbox,
        "INSERT INTO articles (id, ticket_id, inbox_id, author_id, author_address, author_status, kind, message_id,"
        " subject, text, visible_text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)": articles,
        "INSERT INTO message_ids (message_id, ticket_id, article_id, direction, created_at) VALUES (?, ?, ?, ?, ?)":
            message_ids,
        "INSERT INTO outbox (created_at, ticket_id, kind, mail_from, rcpt_to, message_id, raw, status, attempts,"
        " next_attempt_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', 1, ?, ?)": outbox,
    }
    if "raw" not in {row[1] for row in conn.execute("PRAGMA table_info(inbox)")}:
        # Since migration 0009 a mail's bytes live in inbox_raw (a checkout before it keeps them in the row).
        rows_of = statements.pop(next(sql for sql in statements if sql.startswith("INSERT INTO inbox ")))
        statements = {
            "INSERT INTO inbox (id, received_at, mail_from, rcpt_tos, message_id, size, status, decision, ticket_id,"
            " processed_at, attempts) VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, 1)":
                lambda: (row[:6] + row[7:] for row in rows_of()),
            "INSERT INTO inbox_raw (inbox_id, raw) VALUES (?, ?)": lambda: ((row[0], row[6]) for row in rows_of()),
            **statements}
    for sql, rows in statements.items():
        for chunk in _chunks(rows()):
            conn.executemany(sql, chunk)


def fill(database: Path, tickets: int, *, root: Path = ROOT) -> dict[str, float]:
    """Migrate a new database at ``database`` and load ``tickets`` tickets; returns counts and seconds."""
    started = time.monotonic()
    migrate(database, root)
    organisations = organisations_for(tickets)
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1000000")
        indexes = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                               " AND tbl_name NOT IN ('users', 'organisations', 'vms')").fetchall()
        conn.execute("BEGIN")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        now = datetime.now(timezone.utc)
        _directory(conn, organisations, _iso(now - HISTORY - timedelta(days=1)))
        _tickets(conn, tickets, organisations, now)
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    return {"tickets": tickets, "organisations": organisations, "seconds": time.monotonic() - started,
            "megabytes": database.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path)
    parser.add_argument("--tickets", type=int, default=100000)
    args = parser.parse_args()
    if args.database.exists():
        parser.error(f"{args.database} exists; the loader fills only a new database")
    figures = fill(args.database, args.tickets)
    print(f"{figures['tickets']:,} tickets, {figures['organisations']:,} organisations:"
          f" {figures['seconds']:.1f} s, {figures['megabytes']:.0f} MB")


if __name__ == "__main__":
    main()
