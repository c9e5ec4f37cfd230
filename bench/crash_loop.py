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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash import crash_loop, loop_command  # noqa: E402


def main() -> None:
    loop_command(__doc__, prefix="mailticketd-crash-", keep_help="keep the database, maildir and log",
                 loop=lambda folder, args, seed, say: crash_loop(folder, kills=args.kills,
                                                                 connections=args.connections, seed=seed, say=say))


if __name__ == "__main__":
    main()
