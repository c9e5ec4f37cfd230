"""Crash loop with three daemons on one PostgreSQL: two of them SIGKILLed in turn under SMTP load on all three.

Run: .venv/bin/python bench/crash_loop_shared.py [--kills 20] [--connections 3] [--seed N]

Starts a private PostgreSQL cluster (``initdb`` in a temporary folder on a free port, as the tests do), three
``mailticketd serve`` processes on one database with one maildir, clients sending new mails to all three, and kills
the second or the third daemon at random moments, restarting it each time.  After every restart and at the end
the promises of ``tests/crash.py`` are checked against PostgreSQL: every mail answered ``250`` ends as exactly one
article, no ticket or ticket number twice, every outgoing mail delivered (by Message-ID), at most one repeated
delivery per kill.  Exits non-zero with the broken promise; prints a summary.  The short version runs in the test
suite: ``tests/test_crash_shared.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash import loop_command  # noqa: E402
from tests.crash_shared import crash_loop_shared  # noqa: E402
from tests.postgres import Cluster, available  # noqa: E402


def _on_a_cluster(folder: Path, args: argparse.Namespace, seed: int, say: Callable[[str], None]) -> str:
    cluster = Cluster()
    try:
        cluster.start()
        return crash_loop_shared(folder, cluster.database(), kills=args.kills, connections=args.connections,
                                 seed=seed, say=say)
    finally:
        cluster.stop()


def main() -> None:
    if not available():
        sys.exit("PostgreSQL is not installed (tests/setup-system.sh installs it)")
    loop_command(__doc__, prefix="mailticketd-crash-shared-", keep_help="keep the maildir and the logs",
                 loop=_on_a_cluster)


if __name__ == "__main__":
    main()
