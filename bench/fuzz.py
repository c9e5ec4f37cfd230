"""Long fuzzing run: the hostile-mail property tests with the long hypothesis profile and larger caps.

Run: .venv/bin/python bench/fuzz.py [--examples N] [-- extra pytest arguments]

Runs ``tests/test_hostile.py`` against the daemon process with
``MAILTICKETD_FUZZ_PROFILE=long``: 1,500 generated MIME trees, 300 deeply
nested mails (up to 400 levels) and 200 huge header blocks by default, with
subjects up to 400 KB, lines up to 200 KB and parts up to 8 MB.  Each mail
must be refused with a clear 4xx/5xx and enhanced code, or processed into an
article (or kept as failed with a reason), while a second client gets banner
and NOOP within a second and peak memory stays within 400 MiB of the idle
daemon's.  Hypothesis prints the smallest failing mail it finds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=None, help="examples per test (default: the long profile's)")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest, e.g. -k deeply")
    args = parser.parse_args()
    env = {**os.environ, "MAILTICKETD_FUZZ_PROFILE": "long"}
    if args.examples is not None:
        env["MAILTICKETD_FUZZ_EXAMPLES"] = str(args.examples)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_hostile.py", "-p", "no:cacheprovider",
                             "-q", "-s", "--hypothesis-show-statistics", *args.pytest_args], cwd=ROOT, env=env)
    print(f"fuzzing took {time.monotonic() - started:.0f} s; pytest exit code {result.returncode}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
