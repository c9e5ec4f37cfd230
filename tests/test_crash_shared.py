"""SIGKILL with three daemons on one PostgreSQL: mail arrives at all three while two of them are killed in turn.

The long version (twenty kills and more) is ``bench/crash_loop_shared.py``; both run ``tests/crash_shared.py``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.crash_shared import crash_loop_shared

pytestmark = pytest.mark.postgresql


async def test_three_daemons_with_two_killed_in_turn_lose_nothing_and_make_nothing_twice(
        tmp_path: Path, postgres_url: str) -> None:
    """Four SIGKILLs of two of three daemons under SMTP load on all three: every 250 is one article, no ticket or
    ticket number twice, every outgoing mail delivered, at most one repeated delivery per kill."""
    seed = random.randrange(2**32)
    print(f"seed: {seed}")  # shown on failure: bench/crash_loop_shared.py --seed SEED repeats the kill moments
    summary = await asyncio.to_thread(crash_loop_shared, tmp_path, postgres_url, kills=4, connections=2, seed=seed,
                                      min_gap=0.5, max_gap=1.5, settle_timeout=120)
    print(summary)
