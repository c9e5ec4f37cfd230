"""SIGKILL under load: a few random kills of the daemon process while SMTP clients keep sending.

The long version (twenty kills and more) is ``bench/crash_loop.py``; both
run the loop in ``tests/crash.py``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.crash import crash_loop


async def test_random_kills_under_load_lose_nothing_and_repeat_at_most_one_mail_per_kill(tmp_path: Path) -> None:
    """Four SIGKILLs at random moments under load: every 250 is one article, the database intact, few duplicates."""
    seed = random.randrange(2**32)
    print(f"seed: {seed}")  # shown on failure: bench/crash_loop.py --seed SEED repeats the kill moments
    summary = await asyncio.to_thread(crash_loop, tmp_path, kills=4, connections=2, seed=seed,
                                      min_gap=0.3, max_gap=1.5, settle_timeout=60)
    print(summary)
