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
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash_shared import crash_loop_shared  # noqa: E402
from tests.postgres import Cluster, available  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill moments (printed)")
    parser.add_argument("--keep", action="store_true", help="keep the maildir and the logs")
    args = parser.parse_args()
    if not available():
        sys.exit("PostgreSQL is not installed (tests/setup-system.sh installs it)")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed: {seed}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="mailticketd-crash-shared-"))
    cluster = Cluster()
    try:
        cluster.start()
        summary = crash_loop_shared(folder, cluster.database(), kills=args.kills, connections=args.connections,
                                    seed=seed, say=lambda line: print(line, flush=True))
    except AssertionError as broken:
        print(f"PROMISE BROKEN: {broken}\nfiles kept in {folder}", flush=True)
        sys.exit(1)
    finally:
        cluster.stop()
    print(summary)
    if args.keep:
        print(f"files kept in {folder}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
