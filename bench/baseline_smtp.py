"""The baselines of bench/load.py: aiosmtpd servers that do nothing, or only commit each mail durably.

Run (bench/load.py starts them): .venv/bin/python bench/baseline_smtp.py null|durable PORT [DATABASE]

``null`` answers ``250`` to every mail and forgets it: the protocol's ceiling
on this machine.  ``durable`` commits each raw mail in its own transaction to a
SQLite file in WAL mode with ``synchronous=FULL`` before it answers ``250``
(one writer thread, so the event loop keeps reading other sessions meanwhile):
the ceiling of a server that keeps the daemon's promise without group commit.
Both listen on 127.0.0.1 in one event loop, as the daemon does, and stop on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class NullHandler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK"


class DurableHandler:
    def __init__(self, database: Path) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, received REAL NOT NULL,"
                          " mail_from TEXT NOT NULL, rcpt_tos TEXT NOT NULL, raw BLOB NOT NULL)")

    def _commit(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO inbox (received, mail_from, rcpt_tos, raw) VALUES (?, ?, ?, ?)",
                          (time.time(), mail_from, ",".join(rcpt_tos), raw))
        self.conn.execute("COMMIT")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        await asyncio.get_running_loop().run_in_executor(
            self.executor, self._commit, envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        return "250 2.0.0 OK"


async def serve(kind: str, port: int, database: Path | None) -> None:
    handler: Any = NullHandler() if kind == "null" else DurableHandler(database or Path("baseline.sqlite3"))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="baseline.example", ident="baseline", data_size_limit=26214400,
                     enable_SMTPUTF8=True), "127.0.0.1", port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind not in ("null", "durable"):
        raise SystemExit("usage: baseline_smtp.py null|durable PORT [DATABASE]")
    database = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(serve(kind, port, database))


if __name__ == "__main__":
    main()
