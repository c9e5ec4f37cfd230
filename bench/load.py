"""Benchmark: how fast the daemon accepts support mail and turns it into tickets, beside two baselines.

Run: .venv/bin/python bench/load.py [--mails 1500] [--processes 2] [--connections 4] [--modes reuse per-mail]
                                    [--servers null durable daemon] [--directory 1000] [--root CHECKOUT]
                                    [--half-rate] [--folder DIR]

In one run, for each connection mode (``reuse``: up to 100 mails a session;
``per-mail``: one session per mail), it starts each server as a process of its
own on 127.0.0.1 and sends it the same mails from ``--processes`` client
processes with ``--connections`` sessions each (bench/load_clients.py):

* ``null``: an aiosmtpd server that only answers ``250`` (the protocol's ceiling);
* ``durable``: one that commits each raw mail to SQLite, ``synchronous=FULL``,
  before its ``250`` (the ceiling of a durable server without group commit);
* ``daemon``: ``mailticketd serve`` from ``--root`` (this checkout by default)
  with a temporary config, on a fresh database that bench/population.py filled
  with a directory (``--directory`` tickets' worth of organisations, people and
  VMs, so the senders are known customers), operators configured and
  outgoing mail written to a maildir.

It prints one table: accepted mails/s (from the start to the last ``250``),
the transaction's latency (per-mail mode: connect to ``250``), and end-to-end
mails/s, from the first ``250`` until every inbox row is done and every
outgoing mail it caused is written (polled read-only in the database file);
each rate also as a share of the ``null`` server's accepted rate in the same
mode in the same run.  ``--half-rate``: once the daemon is done with the storm,
the same clients send it a steady stream at half its accepted rate for 10
seconds but at most ``--mails`` mails (new mails, the same mode), and the
output gives the latency there (from the moment a session sends a mail: one
that waits for a free session is not counted) and how long after the
stream's last ``250`` every mail was processed and its outgoing mail written,
polled every 50 ms (processing keeps pace with such a stream, or this grows
with its length).  Everything is bounded: ``--timeout`` seconds per phase.

Before each daemon starts and once it is done with the storm, the run creates
300 files of 5 KB beside its maildir and prints the CPU a file took: the
daemon writes two to three files a mail, and what that costs depends on the
file system's state. On ext4 without a journal, creating a file passes over
every inode freed in the last one to six minutes (``find_inode_bit`` in the
kernel's ``fs/ext4/ialloc.c``), so right after a run's thousands of files were
removed a file can cost 10-25 times the CPU, which the ``null`` server never
pays. The runs' folder is removed at the end; ``--folder DIR`` keeps it (in
``DIR``, which must not exist), so that runs one after the other (alternating
two checkouts) do not measure the one before's removal: remove those folders
after the last run.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load_clients import client_process  # noqa: E402
from tests.process import wait_for_banner  # noqa: E402
from population import fill, organisations_for  # noqa: E402
from support_mail import OPERATOR, SUPPORT  # noqa: E402

HERE = Path(__file__).resolve().parent
# A 5 KB file costs 25-50 µs of CPU here on a quiet file system, 400-1,000 µs when it is taxed (see above).
TAXED_FILE = 100.0


@dataclass
class Result:
    server: str
    mode: str
    mails: int
    errors: dict[str, int]
    accepted_per_s: float
    p50: float
    p95: float
    p99: float
    end_to_end_per_s: float | None
    tagged: int
    replies: int
    half_rate: dict[str, float] | None = None  # the stream at half the peak: rate, mails, p50, p99, behind
    file_cost: tuple[float, float] | None = None  # µs of CPU to create a 5 KB file beside the maildir: before, after


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_config(folder: Path, port: int, database: Path, mails: int) -> Path:
    """A site config for the benchmark: loopback only, limits that a mail storm does not hit."""
    config = folder / "mailticketd.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "mx.example.net"\nmax_connections = 1000\n'
        f'max_connections_per_client = 1000\n\n'
        f'[http]\nlisten = "127.0.0.1:0"\n\n'
        f'[mail]\naddresses = ["{SUPPORT}"]\n\n'
        f'[operators]\naddresses = ["{OPERATOR}"]\n\n'
        f'[notify]\nmax_auto_replies_per_hour = {mails + 1}\n\n'
        f'[inbox]\nmax_backlog = {mails + 1}\n\n'
        f'[storage]\ndatabase = "{database}"\n\n'
        f'[outbound]\nmaildir = "{folder / "maildir"}"\n', encoding="utf-8")
    return config


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000 if ordered else float("nan")


def _finished(database: Path) -> bool:
    """Every inbox row is done and every outgoing mail is written (read-only look)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        pending = conn.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM outbox WHERE status = 'queued'").fetchone()[0]
    return not pending and not queued


def merge(figures: list[dict[str, Any]]) -> tuple[list[float], list[float], dict[str, int]]:
    """The client processes' figures together: latencies, the moments of each 250, and errors by kind."""
    errors: Counter[str] = Counter()
    for part in figures:
        errors.update(part["errors"])
    return ([value for part in figures for value in part["latencies"]],
            [value for part in figures for value in part["done_at"]], dict(errors))


def run_clients(args: argparse.Namespace, ports: list[int], reuse: bool, database: Path | None, mails: int = 0,
                rate: float = 0.0, seed: int = 1000) -> tuple[float, list[dict[str, Any]]]:
    """Start the client processes (process i sends to ``ports[i % len(ports)]``), release them together; returns the
    start moment and their figures.  ``mails`` (else ``--mails``) in all; ``rate``: mails a second in all, as a
    steady stream (else as fast as they go)."""
    context = multiprocessing.get_context("fork")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    mails = mails or args.mails
    share = mails // args.processes
    organisations = organisations_for(args.directory)
    interval = args.processes / rate if rate else 0.0
    workers = [context.Process(target=client_process, args=(
        ports[index % len(ports)], share + (1 if index < mails % args.processes else 0), args.connections,
        reuse, organisations, seed + index, str(database) if database else None, ready, go, results, args.timeout,
        interval)) for index in range(args.processes)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    started = time.monotonic()
    go.set()
    figures = [results.get(timeout=args.timeout + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return started, figures


def file_cost(folder: Path, files: int = 300) -> float:
    """Microseconds of this thread's CPU to create, write and close a 5 KB file in ``folder`` (made here; the files
    stay until the run's folder is removed: removing them now would tax the daemon's files)."""
    folder.mkdir()
    content = b"x" * 5000
    started = time.thread_time()
    for index in range(files):
        (folder / f"{index}.eml").write_bytes(content)
    return (time.thread_time() - started) / files * 1e6


def measure(args: argparse.Namespace, server: str, mode: str, folder: Path) -> Result:
    port = free_port()
    folder.mkdir()
    database = folder / "db.sqlite3"
    before = after = None
    if server == "daemon":
        before = file_cost(folder / "probe-before")
        fill(database, args.directory, root=args.root)
        command = [sys.executable, "-m", "mailticketd", "--config",
                   str(daemon_config(folder, port, database, args.mails)), "serve"]
    else:
        command = [sys.executable, str(HERE / "baseline_smtp.py"), server, str(port), str(database)]
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=args.root, stdout=subprocess.DEVNULL, stderr=log)
    daemon = server == "daemon"
    half_rate = None
    try:
        wait_for_banner(port, process)
        started, figures = run_clients(args, [port], mode == "reuse", database if daemon else None)
        latencies, done_at, errors = merge(figures)
        accepted = len(done_at) / (max(done_at) - started) if done_at else 0.0
        end_to_end = None
        if daemon and done_at:
            deadline = time.monotonic() + args.timeout
            while not _finished(database):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon not done after {args.timeout} s")
                time.sleep(0.05)
            end_to_end = len(done_at) / (time.monotonic() - min(done_at))
            after = file_cost(folder / "probe-after")
            if args.half_rate:
                half_rate = _stream(args, port, mode == "reuse", database, accepted / 2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return Result(server, mode, len(done_at), errors, accepted, _percentile(latencies, 0.5),
                  _percentile(latencies, 0.95), _percentile(latencies, 0.99), end_to_end,
                  sum(part["tagged"] for part in figures), sum(part["replies"] for part in figures), half_rate,
                  (before, after) if before is not None and after is not None else None)


def _stream(args: argparse.Namespace, port: int, reuse: bool, database: Path, rate: float) -> dict[str, float]:
    """Send the daemon a steady stream at ``rate`` for 10 seconds (at most ``--mails``) and wait until it is done
    with it: the stream's latency, and how long after its last ``250`` every mail was done."""
    mails = max(args.processes, min(args.mails, int(rate * 10)))
    _, figures = run_clients(args, [port], reuse, database, mails=mails, rate=rate, seed=2000)
    latencies, done_at, errors = merge(figures)
    deadline = time.monotonic() + args.timeout
    while not _finished(database):
        if time.monotonic() > deadline:
            raise RuntimeError(f"daemon not done with the stream after {args.timeout} s")
        time.sleep(0.05)
    return {"rate": rate, "mails": len(done_at), "refused": sum(errors.values()), "p50": _percentile(latencies, 0.5),
            "p99": _percentile(latencies, 0.99), "behind": time.monotonic() - max(done_at) if done_at else 0.0}


def report(results: list[Result]) -> None:
    print(f"{'server':<8} {'mode':<9} {'mails':>6} {'accepted/s':>10} {'of null':>8} {'p50 ms':>7} {'p95 ms':>7}"
          f" {'p99 ms':>7} {'end-to-end/s':>12} {'of null':>8}")
    ceiling = {result.mode: result.accepted_per_s for result in results if result.server == "null"}
    for r in results:
        base = ceiling.get(r.mode)
        share = f"{r.accepted_per_s / base:.0%}" if base else "-"
        if r.end_to_end_per_s is None:
            e2e, e2e_share = "=accepted", "-"
        else:
            e2e, e2e_share = f"{r.end_to_end_per_s:.0f}", f"{r.end_to_end_per_s / base:.0%}" if base else "-"
        print(f"{r.server:<8} {r.mode:<9} {r.mails:>6} {r.accepted_per_s:>10.0f} {share:>8} {r.p50:>7.1f}"
              f" {r.p95:>7.1f} {r.p99:>7.1f} {e2e:>12} {e2e_share:>8}")
    for r in results:
        if r.errors:
            print(f"not accepted ({r.server}, {r.mode}): " + ", ".join(f"{k} {v}" for k, v in r.errors.items()))
    for r in results:
        if r.server == "daemon":
            print(f"replies ({r.mode}): {r.replies}, of which carried the ticket's tag: {r.tagged}"
                  " (the others thread by In-Reply-To)")
    for r in results:
        if r.file_cost is not None:
            print(f"creating a 5 KB file beside the daemon's maildir ({r.mode}): {r.file_cost[0]:.0f} µs of CPU before"
                  f" the run, {r.file_cost[1]:.0f} µs after it")
            if max(r.file_cost) > TAXED_FILE:
                print("  the file system taxed new files in this run (files removed within minutes before it, on a"
                      " file system without a journal): its end-to-end rate understates the daemon; see --folder")
    for r in results:
        if r.half_rate is not None:
            half = r.half_rate
            print(f"daemon {r.mode} at half its peak ({half['rate']:.0f} mails/s, {half['mails']:.0f} mails"
                  f"{', %d not accepted' % half['refused'] if half['refused'] else ''}): p50 {half['p50']:.1f} ms, "
                  f"p99 {half['p99']:.1f} ms; all done {half['behind']:.2f} s after the last 250")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1500, help="mails per server and mode")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=4, help="concurrent sessions per client process")
    parser.add_argument("--modes", nargs="+", default=["reuse", "per-mail"], choices=["reuse", "per-mail"])
    parser.add_argument("--servers", nargs="+", default=["null", "durable", "daemon"],
                        choices=["null", "durable", "daemon"])
    parser.add_argument("--directory", type=int, default=1000,
                        help="tickets whose directory is loaded before the run (organisations = this / 50, min. 20)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds at most per phase")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose daemon is measured")
    parser.add_argument("--half-rate", action="store_true",
                        help="then a steady stream to the daemon at half its accepted rate: latency and lag")
    parser.add_argument("--folder", type=Path,
                        help="keep the runs' databases and maildirs in this new folder (default: removed at the end)")
    args = parser.parse_args()
    print(f"mails: {args.mails} per run, {args.processes} client processes x {args.connections} sessions,"
          f" 5 % with 200 KB attachments, ~30 % replies; directory of {organisations_for(args.directory)}"
          " organisations", flush=True)
    results = []
    with contextlib.ExitStack() as cleanup:
        if args.folder is None:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="mailticketd-load-")))
        else:
            folder = args.folder
            folder.mkdir(parents=True)  # a folder of its own: an earlier run's files are not mixed in
        for mode in args.modes:
            for server in args.servers:
                results.append(measure(args, server, mode, folder / f"{server}-{mode}"))
    report(results)


if __name__ == "__main__":
    main()
