"""Benchmark: mailticketd against an aiosmtpd server that only answers 250, in one run, as ratios.

Run: .venv/bin/python bench/accept_ratio.py [--mails 2000] [--clients 2] [--per-connection 100]
     [--half-rate] [--profile DIR]

A second baseline commits each mail to SQLite (``synchronous=FULL``) in a
transaction of its own before its ``250`` (bench/baseline_smtp.py's
``durable``): what keeping a mail durably costs here without any of the
daemon's work. Every server runs as a process of its own; the clients are
processes of their own too (smtplib, one connection per ``--per-connection``
mails), sending about 4 KB German support mails (a VM name in the subject,
every fifth with a CC). The clients build their mails first; the clock starts
once all of them are ready, so building the mails (about half a second for 500)
is nobody's time. For the daemon it reports the rate of ``250`` answers (from
that start to the last answer), the latency of one SMTP transaction (MAIL to
the answer after the final dot), and the end-to-end rate: from the first
``250`` until no inbox row is pending and no outgoing mail is queued (every
acknowledgement and operator notice written to the maildir).
``--half-rate`` sends a second time, paced at half the daemon's accepted rate
for 10 seconds (at most ``--mails``), and reports the latency there (from the
moment a client sends a mail: the time a mail waits behind the one before is
not counted) and how long after its last ``250`` the daemon had processed and
delivered every mail (processing keeps pace with such a stream, or this grows
with its length).
``--profile DIR`` records the daemon with py-spy (``pip install
py-spy==0.4.3``; not a dependency of the project).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.process import wait_for_banner  # noqa: E402

SUPPORT = "support@example.net"

_PARAGRAPH = ("Sehr geehrte Damen und Herren,\n\nseit heute Morgen um 07:45 Uhr antwortet unser Server {vm} "
              "nicht mehr zuverlässig. Die Webseite lädt sehr langsam, gelegentlich erscheint ein Fehler 502. "
              "Wir haben bereits den Dienst neu gestartet, leider ohne Erfolg. Könnten Sie bitte prüfen, ob "
              "es ein Problem mit dem Speicher oder dem Netzwerk gibt? Die Überwachung zeigt eine hohe Last.\n\n")

_NOTHING_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler(), hostname="localhost", ident="nothing",
                                                   decode_data=False), "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def make_mails(count: int, seed: int) -> list[bytes]:
    mails = []
    for i in range(count):
        vm = f"de-fr-srv-{(seed * 7919 + i) % 10000:04d}"
        message = EmailMessage()
        message["From"] = f"Kunde {i % 50} <kunde{i % 50}@firma{i % 7}.example>"
        message["To"] = SUPPORT
        if i % 5 == 0:
            message["Cc"] = f"kollege{i % 13}@firma{i % 7}.example"
        message["Subject"] = f"{vm} antwortet nicht (Störung {seed}-{i})"
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        message["Message-ID"] = make_msgid(domain=f"firma{i % 7}.example")
        message.set_content((_PARAGRAPH.format(vm=vm) * 6) + "Mit freundlichen Grüßen\nKunde\n")
        mails.append(message.as_bytes())
    return mails


def _client(port: int, seed: int, count: int, per_connection: int, interval: float,
            ready: multiprocessing.Queue, go: multiprocessing.Event,  # type: ignore[type-arg]
            results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    mails = make_mails(count, seed)  # built before the clock starts: building them is not the server's time
    latencies: list[float] = []
    answered: list[float] = []
    refused = 0
    ready.put("ready")
    go.wait()
    next_at = time.monotonic()
    for start in range(0, count, per_connection):
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=120) as client:
            for raw in mails[start:start + per_connection]:
                if interval:
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    next_at += interval
                began = time.monotonic()
                try:
                    client.sendmail("kunde@firma.example", [SUPPORT], raw)
                except smtplib.SMTPResponseException:
                    refused += 1
                else:
                    answered.append(time.monotonic())
                latencies.append(time.monotonic() - began)
    results.put((latencies, answered, refused))


def send(port: int, clients: int, mails: int, per_connection: int, rate: float = 0.0,
         seed: int = 0) -> tuple[float, float, float, list[float], int]:
    """Send ``mails`` from ``clients`` processes, once all of them have built their mails; returns the start, the
    first and the last ``250``, the latencies and the refusals (times of ``time.monotonic``, which all processes
    share)."""
    ready: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    go = multiprocessing.Event()
    share = mails // clients
    interval = clients / rate if rate else 0.0
    processes = [multiprocessing.Process(target=_client, args=(port, seed * 100 + n, share, per_connection,
                                                                interval, ready, go, results)) for n in range(clients)]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            ready.get(timeout=120)
    finally:
        started = time.monotonic()
        go.set()  # also when one of them failed: the others must not wait for ever
    latencies: list[float] = []
    answered: list[float] = []
    refused = 0
    for _ in processes:
        got, times, lost = results.get()
        latencies += got
        answered += times
        refused += lost
    ended = time.monotonic()
    for process in processes:
        process.join()
    return started, min(answered, default=ended), max(answered, default=ended), sorted(latencies), refused


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (its parse processes and the fork server that starts them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_seconds(pid: int) -> float:
    """User and system time a process and the processes below it have used so far (Linux); processes that ended
    count only when reaped."""
    total = 0.0
    for child in _descendants(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total + _own_cpu_seconds(pid)


def _own_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    if os.environ.get("BENCH_DEBUG"):
        switches = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches" in line:
                    switches += int(line.split()[1])
        print("user", int(fields[11]), "sys", int(fields[12]), "switches", switches)
        for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
            stat = (task / "stat").read_text()
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat.rpartition(")")[2].split()
            print(f"   {name:<20} user {rest[11]:>6} sys {rest[12]:>6}")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] * 1000


def _wait_processed(database: Path, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        while time.monotonic() < deadline:
            pending = conn.execute("SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
                                   " + (SELECT count(*) FROM outbox WHERE status = 'queued')").fetchone()[0]
            if not pending:
                return time.monotonic()
            time.sleep(0.05)
    finally:
        conn.close()
    raise RuntimeError("the daemon did not finish in time")


def _nothing(args: argparse.Namespace) -> tuple[float, float]:
    """Mails/s of the server that only answers 250, and its CPU milliseconds a mail."""
    return _baseline(args, [sys.executable, "-c", _NOTHING_SERVER])


def _durable(args: argparse.Namespace, folder: Path) -> float:
    """Mails/s of bench/baseline_smtp.py's server committing each mail durably before its 250 (no group commit)."""
    rate, _ = _baseline(args, [sys.executable, str(ROOT / "bench" / "baseline_smtp.py"), "durable"],
                        folder / "durable.sqlite3")
    return rate


def _baseline(args: argparse.Namespace, command: list[str], *extra: Path) -> tuple[float, float]:
    """Mails/s of a baseline server started as ``command PORT [extra]``, and its CPU milliseconds a mail."""
    port = _free_port()
    server = subprocess.Popen([*command, str(port), *map(str, extra)])
    try:
        wait_for_banner(port, server)
        cpu = _cpu_seconds(server.pid)
        started, _, ended, _, _ = send(port, args.clients, args.mails, args.per_connection, seed=1)
        cpu = _cpu_seconds(server.pid) - cpu
    finally:
        server.terminate()
        server.wait()
    return args.mails / (ended - started), cpu * 1000 / args.mails


def _daemon(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    port = _free_port()
    config = folder / "mailticketd.toml"
    config.write_text(textwrap.dedent(f"""
        [smtp]
        listen = "127.0.0.1:{port}"
        max_connections_per_client = 50
        [http]
        listen = "127.0.0.1:{_free_port()}"
        [mail]
        addresses = ["{SUPPORT}"]
        [storage]
        database = "{folder}/bench.sqlite3"
        [outbound]
        maildir = "{folder}/maildir"
        [operators]
        addresses = ["op@provider.example"]
        [inbox]
        max_backlog = {args.mails * 3}
        [notify]
        max_auto_replies_per_hour = {args.mails * 3}
        [log]
        level = "warning"
    """))
    daemon = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"], cwd=ROOT,
                              stdout=subprocess.DEVNULL)
    spy = None
    try:
        wait_for_banner(port, daemon)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(daemon.pid),
                                    "--format", "raw", "--output", str(args.profile / "daemon.txt"), "--threads",
                                    "--rate", "200", "--nonblocking", *args.spy_options], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu = _cpu_seconds(daemon.pid)
        started, first, ended, latencies, refused = send(port, args.clients, args.mails, args.per_connection,
                                                          seed=2)
        processed = _wait_processed(folder / "bench.sqlite3")
        cpu = _cpu_seconds(daemon.pid) - cpu
        figures = {"accepted": (args.mails - refused) / (ended - started), "refused": refused,
                   "p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95),
                   "p99": _percentile(latencies, 0.99), "end_to_end": (args.mails - refused) / (processed - first),
                   "cpu_ms": cpu * 1000 / args.mails}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
            spy = None
        if args.half_rate:
            rate = figures["accepted"] / 2
            _, _, paced_end, paced, _ = send(port, args.clients, min(args.mails, int(rate * 10)), args.per_connection,
                                          rate=rate, seed=3)
            figures |= {"half_rate": rate, "half_p50": _percentile(paced, 0.5), "half_p99": _percentile(paced, 0.99),
                        "half_behind": _wait_processed(folder / "bench.sqlite3") - paced_end}
        return figures
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
        daemon.terminate()
        daemon.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--per-connection", type=int, default=100)
    parser.add_argument("--half-rate", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--spy-option", dest="spy_options", action="append", default=[],
                        help="passed on to py-spy record, e.g. --spy-option=--gil")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    nothing, nothing_cpu = _nothing(args)
    with tempfile.TemporaryDirectory() as folder:
        durable = _durable(args, Path(folder))
        figures = _daemon(args, Path(folder))
    print(f"mails: {args.mails}, client processes: {args.clients}, mails a connection: {args.per_connection}")
    print(f"{'server':<34}{'mails/s':>9}{'ratio':>8}")
    print(f"{'aiosmtpd answering 250':<34}{nothing:>9.0f}{1:>8.0%}")
    print(f"{'aiosmtpd committing each mail':<34}{durable:>9.0f}{durable / nothing:>8.0%}")
    print(f"{'mailticketd accepted (250)':<34}{figures['accepted']:>9.0f}{figures['accepted'] / nothing:>8.0%}")
    print(f"{'mailticketd end-to-end':<34}{figures['end_to_end']:>9.0f}{figures['end_to_end'] / nothing:>8.0%}")
    print(f"CPU a mail: do-nothing server {nothing_cpu:.2f} ms, mailticketd {figures['cpu_ms']:.2f} ms "
          "(accepting, processing and delivering to the maildir; its parse processes included)")
    print(f"accept latency at full load: p50 {figures['p50']:.1f} ms, p95 {figures['p95']:.1f} ms, "
          f"p99 {figures['p99']:.1f} ms; refused: {figures['refused']:.0f}")
    if "half_rate" in figures:
        print(f"accept latency at half the peak ({figures['half_rate']:.0f} mails/s): "
              f"p50 {figures['half_p50']:.1f} ms, p99 {figures['half_p99']:.1f} ms; every mail processed and "
              f"delivered {figures['half_behind']:.2f} s after the last 250")


if __name__ == "__main__":
    main()
