"""Whose turn it is to write: one SQLite writer at a time in this process, the SMTP side first.

SQLite lets one connection write at a time and makes the others poll with
growing sleeps (1, 2, 5, … 100 ms), which starves a writer that keeps
missing the gaps.  Inside the process the writers take turns here instead:
the pipeline, the delivery worker and the web queue behind each other; the
SMTP side's group commit waits only for the transaction in progress, never
for the ones queued before it, because a sender waits for its ``250``.
Other processes (the staff CLI) still meet SQLite's busy timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteTurn:
    """A lock with a fast lane: ``urgent`` waiters go before everyone who queued normally."""

    def __init__(self) -> None:
        self._taken = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._taken and not self._urgent and not self._normal:
            self._taken = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn was handed over just as the waiter gave up: pass it on
            else:
                queue.remove(waiter)
            raise

    def _release(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the turn passes on; ``_taken`` stays set
                    return
        self._taken = False
