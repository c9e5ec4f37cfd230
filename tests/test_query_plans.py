"""Every query of the mail path walks an index: none reads a whole table, so a mail costs the same at any size.

The statements are not listed by hand: the real daemon runs on a real SQLite
file with a trace on its database connection while mails go through it (new
tickets with CCs, VMs and a file, replies by tag, by reply token and by
In-Reply-To, an operator's answer, a bounce), its delivery worker writes the
outgoing mail, the helpdesk lists tickets and the health report is read.  Each
statement traced is then put to ``EXPLAIN QUERY PLAN``; a ``SCAN <table>``
without an index fails the test unless the statement is one of the deliberate
exceptions below, each with its reason.  A query added later is covered as soon
as the mail path runs it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import aiosqlite

from mailticketd.app import Daemon
from tests.helpdesk import COLLEAGUE, MANAGER, people
from tests.helpers import SUPPORT, make_config, make_mail, send, settle

OPERATOR = "op@provider.example"

# Statements that may read a whole table, matched by a piece of their SQL, with the reason.
EXCEPTIONS: dict[str, str] = {}

_FULL_SCAN = re.compile(r"^SCAN (\w+)(?: AS \w+)?$")
_WORK = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "REPLACE")


def _normalised(sql: str) -> str:
    """The statement with literals replaced, so one query run with other values counts once."""
    sql = re.sub(r"X'[0-9A-Fa-f]*'", "?", sql)
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"\b\d+(?:\.\d+)?\b", "?", sql)
    return " ".join(sql.split())


def full_scans(database: Path, statements: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Yield each statement whose plan reads a table without an index, with its plan."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        # Only a stored table counts: a scan of a CTE's or subquery's few rows is no scan of the database.
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for sql in statements:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            if any((match := _FULL_SCAN.match(line)) and match.group(1) in tables for line in plan):
                yield sql, plan


class Recorder:
    """Keeps every statement that a connection runs, one of each shape."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, sql: str) -> None:  # runs in aiosqlite's thread
        if sql.lstrip().upper().startswith(_WORK):
            self.seen.setdefault(_normalised(sql), sql)

    def statements(self) -> list[str]:
        return list(self.seen.values())


async def _trace(daemon: Daemon, recorder: Recorder) -> int:
    """Trace every database connection the daemon holds; returns how many."""
    found: dict[int, aiosqlite.Connection] = {}
    async with daemon.db.read() as store:
        # The repositories' Connection wraps aiosqlite's (and runs short statements on its sqlite3 connection,
        # which the trace covers too).
        conn = getattr(store.conn, "_connection", store.conn)
        assert isinstance(conn, aiosqlite.Connection)
        found[id(conn)] = conn
    for owner in (daemon.db, daemon.handler, daemon.worker, daemon.delivery):
        for value in vars(owner).values():
            if isinstance(value, aiosqlite.Connection):
                found[id(value)] = value
            elif hasattr(value, "__dict__"):
                found.update({id(inner): inner for inner in vars(value).values()
                              if isinstance(inner, aiosqlite.Connection)})
    for conn in found.values():
        await conn.set_trace_callback(recorder)
    return len(found)


def _maildir(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((folder / "new").glob("*"))] if (folder / "new").exists() else []


async def _delivered(daemon: Daemon, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with daemon.db.read() as store:
            if not (await store.outbox.counts())["queued"]:
                return
        daemon.delivery.wake()
        await asyncio.sleep(0.05)
    raise AssertionError("outgoing mail still queued")


def _to(raws: list[bytes], address: str) -> bytes:
    found = [raw for raw in raws if address in str(message_from_bytes(raw)["To"])]
    assert found, f"no mail to {address}"
    return found[-1]


def _dsn(recipient: str, message_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.kunde.example (Mail Delivery System)\r\n"
        f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-plan@mx.kunde.example>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.kunde.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <{SUPPORT}>\r\nTo: {recipient}\r\nMessage-ID: {message_id}\r\n--B--\r\n"
    ).encode()


async def _mail_path(daemon: Daemon, maildir: Path) -> None:
    """New tickets, every kind of reply, an operator's answer and a bounce, each processed and delivered."""
    port = daemon.smtp_port

    async def deliver(raw: bytes, **kwargs: str | list[str]) -> None:
        await send(port, raw, **kwargs)  # type: ignore[arg-type]
        await settle(daemon)
        await _delivered(daemon)

    await deliver(make_mail(MANAGER, subject="de-fr-srv-0815 antwortet nicht", cc=COLLEAGUE,
                            body="Hallo,\nde-fr-srv-0815 und de-be-srv-4711 sind weg.\n",
                            message_id="first@kunde.example",
                            attachments=[("log.txt", "text/plain", b"kernel: panic\n" * 50)]),
                  mail_from=MANAGER)
    await deliver(make_mail("neu@unbekannt.example", subject="Frage zu de-fr-srv-0816"),
                  mail_from="neu@unbekannt.example")
    await deliver(make_mail(MANAGER, subject="AW: [MH#10000] de-fr-srv-0815 antwortet nicht",
                            body="Noch immer nicht.\n"), mail_from=MANAGER)
    await deliver(make_mail(COLLEAGUE, subject="Re: Ausfall", body="Auch bei mir.\n",
                            in_reply_to="first@kunde.example", references="<first@kunde.example>"),
                  mail_from=COLLEAGUE)
    ack = message_from_bytes(_to(_maildir(maildir), MANAGER))
    token = str(ack["Reply-To"])
    await deliver(make_mail(MANAGER, to=token, subject=f"Re: {ack['Subject']}", body="Danke.\n",
                            in_reply_to=str(ack["Message-ID"]).strip("<>")), mail_from=MANAGER, rcpt=[token])
    notice = message_from_bytes(_to(_maildir(maildir), OPERATOR))
    operator_token = str(notice["Reply-To"])
    await deliver(make_mail(OPERATOR, to=operator_token, subject=f"Re: {notice['Subject']}",
                            body="Wir starten die VM neu.\n"), mail_from=OPERATOR, rcpt=[operator_token])
    await deliver(make_mail(MANAGER, subject="AW: [MH#10000] de-fr-srv-0815 antwortet nicht",
                            body="Noch immer nicht.\n", message_id="first@kunde.example"), mail_from=MANAGER)
    sent = message_from_bytes(_to(_maildir(maildir), MANAGER))
    await deliver(_dsn(MANAGER, str(sent["Message-ID"])), mail_from="")


async def _helpdesk_and_health(daemon: Daemon) -> None:
    async with daemon.db.read() as store:
        for address in (MANAGER, COLLEAGUE):
            user = await store.users.by_address(address)
            assert user is not None
            for status, words, number in ((None, [], None), ("open", [], None), ("closed", ["ausfall"], None),
                                          (None, [], 10000)):
                await store.helpdesk.tickets(user, status=status, words=words, number=number, limit=50, offset=0)
    await daemon.health()


async def test_no_query_of_the_mail_path_reads_a_whole_table(tmp_path: Path) -> None:
    """Each statement the daemon runs for a mail, its delivery and the helpdesk list uses an index."""
    config = make_config(tmp_path, notify={"max_auto_replies_per_hour": 100})
    recorder = Recorder()
    async with Daemon(config) as daemon:
        assert await _trace(daemon, recorder) >= 1
        await people(daemon)
        await _mail_path(daemon, tmp_path / "maildir")
        await _helpdesk_and_health(daemon)
        async with daemon.db.read() as store:
            assert len(await store.tickets.list()) >= 2  # the mails really became tickets
        recorded = recorder.statements()
    # The path must really have been walked, or the test proves nothing.
    shapes = "\n".join(recorded)
    for piece in ("FROM inbox", "FROM tickets", "FROM message_ids", "FROM participants", "FROM users",
                  "FROM vms", "FROM outbox", "FROM participants p JOIN tickets t", "INSERT INTO outbox"):
        assert piece in shapes, f"the mail path ran no statement with {piece!r}"
    scans = [(sql, plan) for sql, plan in full_scans(config.storage.database, recorded)
             if not any(piece in sql for piece in EXCEPTIONS)]
    assert not scans, "full table scans:\n" + "\n\n".join(
        f"{_normalised(sql)[:600]}\n  -> {' | '.join(plan)}" for sql, plan in scans)


def test_the_scan_detector_sees_a_full_table_scan(tmp_path: Path) -> None:
    """A query on a column without an index is reported as a scan, one on the primary key is not."""
    database = tmp_path / "plain.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    found = list(full_scans(database, ["SELECT id FROM t WHERE name = 'x'", "SELECT name FROM t WHERE id = 1"]))
    assert [sql for sql, _ in found] == ["SELECT id FROM t WHERE name = 'x'"]
