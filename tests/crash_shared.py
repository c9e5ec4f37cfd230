"""Three daemons on one PostgreSQL under SMTP load on all three, two of them SIGKILLed and restarted again and again.

Shared by ``tests/test_crash_shared.py`` (a few kills) and ``bench/crash_loop_shared.py`` (twenty and more).  The
promises are ``tests/crash.py``'s, read from PostgreSQL: every mail answered ``250`` (by any daemon) ends as
exactly one article, no ticket is made twice for one mail and no ticket number twice, every outgoing mail is
delivered (all three daemons write into one maildir, checked by Message-ID and recipient), and at most one
delivery per kill is repeated.  The daemon that is never killed keeps receiving and working throughout; a killed
daemon's claimed mails and leased sends are taken over by the others once their leases end (short here).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.crash import _EXTRA, Load, Report, check, kill_and_check, wait_until_quiet
from tests.helpers import TOKEN_SECRET
from tests.process import DaemonProcess, write_config

CLAIM_LEASE = 3.0  # seconds a dead daemon's claimed inbox rows wait for another daemon
SEND_LEASE = 5.0  # seconds a dead daemon's leased outgoing mail waits


def shared_configs(folder: Path, url: str, count: int) -> list[tuple[Path, int]]:
    """``count`` config files on the database ``url``: own SMTP ports and folders, one maildir, one token secret."""
    maildir = folder / "maildir"
    found = []
    for index in range(count):
        own = folder / f"d{index}"
        own.mkdir(parents=True, exist_ok=True)
        path, port = write_config(own, f"claim_lease = {CLAIM_LEASE}\n" + _EXTRA)
        text = path.read_text(encoding="utf-8")
        text = text.replace(f'database = "{own / "db.sqlite3"}"', f'database = "{url}"')
        text = text.replace(f'maildir = "{own / "maildir"}"',
                            f'maildir = "{maildir}"\npoll_interval = 0.2\nsend_lease = {SEND_LEASE}')
        text = text.replace("[mail]\n", f'[mail]\ntoken_secrets = ["{TOKEN_SECRET}"]\n')
        path.write_text(text, encoding="utf-8")
        found.append((path, port))
    return found


def crash_loop_shared(folder: Path, url: str, *, kills: int, connections: int = 3, seed: int | None = None,
                      min_gap: float = 0.5, max_gap: float = 2.5, settle_timeout: float = 300.0,
                      say: object = None) -> str:
    """Run the loop with three daemons on ``url`` (an empty or freshly migrated database); raise AssertionError on a
    broken promise; return the summary."""
    chooser = random.Random(seed)
    maildir = folder / "maildir"
    daemons = [DaemonProcess(path, port, folder / f"daemon{index}.log")
               for index, (path, port) in enumerate(shared_configs(folder, url, 3))]
    report = Report()
    started = time.monotonic()
    for daemon in daemons:
        daemon.start()
    load = Load(daemons[0].port, connections, ports=tuple(daemon.port for daemon in daemons))
    load.start()
    try:
        for _ in range(kills):
            time.sleep(chooser.uniform(min_gap, max_gap))
            victim = chooser.choice(daemons[1:])  # the first daemon stays up throughout
            kill_and_check(victim, url, maildir, load, report, say, f" ({victim.log.stem})")
        load.stop()
        wait_until_quiet(url, settle_timeout)
        for daemon in daemons:
            assert daemon.terminate() == 0
        check(url, maildir, load, load.snapshot(), report.kills, final=True)
        report.checks += 1
    finally:
        load.stop()
        for daemon in daemons:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.kill()
    return "three daemons on one PostgreSQL, two of them killed in turn\n" + \
        report.line(load, url, maildir, time.monotonic() - started)
