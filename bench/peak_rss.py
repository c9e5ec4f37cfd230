"""Benchmark: the daemon's peak memory above idle for a 25 MB mail and for 200 open SMTP sessions.

Run: .venv/bin/python bench/peak_rss.py [--megabytes 25] [--sessions 200] [--text [--wide]] [--root CHECKOUT]

It starts ``mailticketd serve`` as a process of its own on a fresh database
with a small directory (bench/population.py), lets it process one small mail
(so everything is imported and warm) and reads its idle RSS.  Then, each time
after resetting the peak (``/proc/PID/clear_refs``), it reads the peak RSS
(``VmHWM`` in ``/proc/PID/status``):

1. while ``--sessions`` clients on 127.0.0.1 hold a session open (EHLO, MAIL,
   RCPT, then wait) for five seconds;
2. while a mail of ``--megabytes`` MB (three attachments, base64; with
   ``--text`` a pasted log as its body instead; ``--wide``: its lines carry
   characters beyond Latin-1, "→" and "€", which make Python's string of it
   two bytes a character) is accepted, processed into a ticket and its
   notifications are written.

Figures are MB (2**20 bytes) above idle; the mail's peak is also given as a
multiple of the mail's size.  They count the daemon's whole process tree (a
process pool parsing mails included): the peaks of its processes are added
up, which is at least the tree's true peak; a child that started during the
run counts with all of its memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import daemon_config, free_port  # noqa: E402
from population import fill  # noqa: E402
from scale import _wait_finished  # noqa: E402
from support_mail import SUPPORT, MailMaker, address  # noqa: E402
from tests.process import wait_for_banner  # noqa: E402

HERE = Path(__file__).resolve().parent


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue  # the thread or process ended meanwhile
    return found


def status_mb(pid: int, field: str) -> float:
    """``field`` of /proc/PID/status in MB, added up over the process tree of ``pid``."""
    total = 0
    for member in tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue  # ended meanwhile
        total += next((int(line.split()[1]) for line in lines if line.startswith(field + ":")), 0)
    return total / 1024


def reset_peak(pid: int) -> None:
    for member in tree(pid):
        try:
            Path(f"/proc/{member}/clear_refs").write_text("5")
        except OSError:
            continue


def big_mail(megabytes: float) -> bytes:
    """A support mail with three binary attachments, ``megabytes`` MB in all as sent (base64)."""
    message = EmailMessage()
    message["From"] = address(1, 0)
    message["To"] = SUPPORT
    message["Subject"] = "Speicherabbild und Protokolle von de-aa-srv-0000"
    message["Message-ID"] = "<big.1@mail.kunde.example>"
    message.set_content("Hallo,\n\nanbei die Dateien zum Absturz von de-aa-srv-0000.\n\nGrüße\n")
    binary = int(megabytes * 1_000_000 * 3 / 4 / 1.0135)  # base64 lines are 76 characters and CRLF
    for index, share in enumerate((0.5, 0.3, 0.2)):
        message.add_attachment(os.urandom(int(binary * share)), maintype="application", subtype="octet-stream",
                               filename=f"teil{index + 1}.bin")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def big_text_mail(megabytes: float, wide: bool = False) -> bytes:
    """A support mail whose body is a pasted log of ``megabytes`` MB (German, quoted-printable), no attachments."""
    message = EmailMessage()
    message["From"] = address(1, 0)
    message["To"] = SUPPORT
    message["Subject"] = "Protokoll von de-aa-srv-0000"
    message["Message-ID"] = "<big.2@mail.kunde.example>"
    line = "2026-11-30 03:14:13 de-aa-srv-0000 kernel: Größe überschritten, Prüfung läuft weiter\n"
    if wide:
        line = line.replace("weiter", "weiter → 5 €")
    sample = EmailMessage()
    sample.set_content(line * 100, cte="quoted-printable")
    per_line = len(sample.get_payload()) / 100  # as sent: quoted-printable, CRLF
    message.set_content("Hallo,\n\nhier das Protokoll:\n\n" + line * int(megabytes * 1_000_000 / per_line),
                        cte="quoted-printable")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


async def hold_sessions(port: int, count: int, seconds: float) -> int:
    """Open ``count`` sessions up to RCPT, keep them for ``seconds``; returns how many got that far."""
    opened: list[asyncio.StreamWriter] = []

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        await reader.readline()
        for command in (b"EHLO client%d.example" % index, b"MAIL FROM:<" + address(1, 1).encode() + b">",
                        b"RCPT TO:<" + SUPPORT.encode() + b">"):
            writer.write(command + b"\r\n")
            line = await reader.readline()
            while line[3:4] == b"-":
                line = await reader.readline()
            if not line.startswith(b"2"):
                raise RuntimeError(f"session {index}: {line!r}")

    results = await asyncio.gather(*(one(index) for index in range(count)), return_exceptions=True)
    await asyncio.sleep(seconds)
    for writer in opened:
        writer.close()
    return sum(1 for result in results if result is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=25.0)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose daemon is measured")
    parser.add_argument("--text", action="store_true", help="a mail whose body is a pasted log, no attachments")
    parser.add_argument("--wide", action="store_true", help="with --text: the log has characters beyond Latin-1")
    args = parser.parse_args()
    raw = big_text_mail(args.megabytes, args.wide) if args.text else big_mail(args.megabytes)
    with tempfile.TemporaryDirectory(prefix="mailticketd-rss-") as name:
        folder = Path(name)
        database = folder / "db.sqlite3"
        fill(database, 1000, root=args.root)
        port = free_port()
        config = daemon_config(folder, port, database, 100)
        with (folder / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"],
                                      cwd=args.root, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for_banner(port, daemon, folder / "daemon.log")
            warm, _ = MailMaker(20, 1, attachment_share=0.0).new()
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.sendmail(address(1, 0), [SUPPORT], warm)
            _wait_finished(database, 60)
            time.sleep(1.0)
            idle = status_mb(daemon.pid, "VmRSS")
            members = len(tree(daemon.pid))
            reset_peak(daemon.pid)
            held = asyncio.run(hold_sessions(port, args.sessions, 5.0))
            sessions_peak = status_mb(daemon.pid, "VmHWM") - idle
            time.sleep(1.0)
            idle_before_mail = status_mb(daemon.pid, "VmRSS")
            reset_peak(daemon.pid)
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
                client.sendmail(address(1, 0), [SUPPORT], raw)
            _wait_finished(database, 300)
            took = time.monotonic() - started
            mail_peak = status_mb(daemon.pid, "VmHWM") - idle_before_mail
            time.sleep(1.0)
            kept = status_mb(daemon.pid, "VmRSS") - idle_before_mail
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    size = len(raw) / 2**20
    print(f"idle RSS: {idle:.1f} MB (after one small mail; {members} process(es) in the daemon's tree)")
    print(f"{held} of {args.sessions} sessions held open: peak {sessions_peak:.1f} MB above idle"
          f" = {sessions_peak * 1024 / max(held, 1):.0f} KB a session")
    kind = ("a text body beyond Latin-1" if args.wide else "a text body") if args.text else "3 attachments"
    print(f"{size:.1f} MB mail ({kind}), accepted and processed in {took:.1f} s: peak {mail_peak:.1f} MB"
          f" above idle ({idle_before_mail:.1f} MB) = {mail_peak / size:.2f}x the mail; still held after it:"
          f" {kept:.1f} MB")


if __name__ == "__main__":
    main()
