"""Benchmark: the daemon's memory for large mails, in parallel SMTP sessions and in processing.

Run: .venv/bin/python bench/memory.py [--sessions 8] [--megabytes 20] [--root CHECKOUT]

It starts ``mailticketd serve`` as a process (from ``--root``, this checkout by
default, so an older checkout can be measured the same way), then:

1. opens ``--sessions`` SMTP sessions and sends each a mail of
   ``--megabytes`` (a base64 attachment) up to, not including, the final dot,
   and reads the daemon's RSS while all of them are in DATA;
2. sends the final dots, waits for every ``250`` and for the inbox to be
   processed, and reads the peak RSS of that phase (VmHWM, reset through
   /proc/PID/clear_refs before it).

Figures are in MB, over the daemon's whole process tree; "per session" is the
growth over the idle daemon divided by the number of sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_rss import reset_peak, status_mb  # noqa: E402
from tests.helpers import make_mail  # noqa: E402

SUPPORT = "support@example.net"


def _status(pid: int, field: str) -> float:
    """``field`` of /proc/PID/status in MB over the daemon's whole process tree (see peak_rss.py)."""
    return status_mb(pid, field)


def _reset_peak(pid: int) -> None:
    reset_peak(pid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    return line


async def _up_to_the_dot(port: int, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _line(reader)
    for command in (b"EHLO bench.example", b"MAIL FROM:<kunde@customer.example>", f"RCPT TO:<{SUPPORT}>".encode(),
                    b"DATA"):
        writer.write(command + b"\r\n")
        answer = await _line(reader)
        assert answer[:1] in (b"2", b"3"), answer
    body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    writer.write(body if body.endswith(b"\r\n") else body + b"\r\n")
    await writer.drain()
    return reader, writer


async def _measure(pid: int, port: int, database: Path, sessions: int, raw: bytes) -> dict[str, float]:
    await asyncio.sleep(1.0)
    idle = _status(pid, "VmRSS")
    open_sessions = [await _up_to_the_dot(port, raw) for _ in range(sessions)]
    await asyncio.sleep(2.0)  # let the daemon read everything that was sent
    in_data = _status(pid, "VmRSS")
    _reset_peak(pid)
    for _, writer in open_sessions:
        writer.write(b".\r\n")
    answers = [await asyncio.wait_for(_line(reader), 300) for reader, _ in open_sessions]
    assert all(answer.startswith(b"250") for answer in answers), answers
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as conn:
            pending = conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone()[0]
        if not pending:
            break
        await asyncio.sleep(0.5)
    processed_peak = _status(pid, "VmHWM")
    for _, writer in open_sessions:
        writer.close()
    return {"idle_rss": idle, "rss_with_sessions_in_data": in_data,
            "per_session": (in_data - idle) / sessions, "peak_store_and_process": processed_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    raw = make_mail(attachments=[("backup.bin", "application/octet-stream",
                                  os.urandom(int(args.megabytes * 1024 * 1024 * 3 / 4)))])
    with tempfile.TemporaryDirectory() as folder:
        port, database = _free_port(), Path(folder) / "db.sqlite3"
        config = Path(folder) / "mailticketd.toml"
        config.write_text(f'[smtp]\nlisten = "127.0.0.1:{port}"\n[http]\nlisten = "127.0.0.1:0"\n'
                          f'[mail]\naddresses = ["{SUPPORT}"]\n[storage]\ndatabase = "{database}"\n'
                          f'[outbound]\nmaildir = "{folder}/maildir"\n[log]\nlevel = "warning"\n')
        daemon = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"],
                                  cwd=args.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            figures = asyncio.run(_measure(daemon.pid, port, database, args.sessions, raw))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    print(json.dumps({"root": str(args.root), "sessions": args.sessions, "mail_mb": round(len(raw) / 2**20, 1),
                      **{key: round(value, 1) for key, value in figures.items()}}))


if __name__ == "__main__":
    main()
