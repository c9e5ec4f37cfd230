"""Crash loop: SIGKILL the daemon process at random moments under SMTP load, then check what survived.

Run: .venv/bin/python bench/crash_loop.py [--kills 20] [--connections 3] [--seed N]

Three SMTP clients keep sending new mails while the real daemon process
(``mailticketd serve``) is killed with SIGKILL at random moments and started
again.  After every restart and at the end: every mail answered ``250`` is
in the inbox and ends as exactly one article, nothing is stored or processed
twice, ``PRAGMA integrity_check`` is ``ok``, every outgoing mail marked sent
is in the maildir, and at most one outgoing mail per kill was delivered
twice.  Exits non-zero with the broken promise; prints a summary.  The short
version runs in the test suite: ``tests/test_crash.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash import crash_loop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill moments (printed)")
    parser.add_argument("--keep", action="store_true", help="keep the database, maildir and log")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed: {seed}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="mailticketd-crash-"))
    try:
        summary = crash_loop(folder, kills=args.kills, connections=args.connections, seed=seed,
                             say=lambda line: print(line, flush=True))
    except AssertionError as broken:
        print(f"PROMISE BROKEN: {broken}\nfiles kept in {folder}", flush=True)
        sys.exit(1)
    print(summary)
    if args.keep:
        print(f"files kept in {folder}")
    else:
        import shutil
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
