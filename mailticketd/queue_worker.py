"""The loop both queue workers share: take the next due row, else sleep until woken or the poll interval passes."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

import structlog

log = structlog.get_logger("mailticketd")


class QueueWorker(ABC):
    """Work one row at a time until ``stop``; ``wake`` when new rows are due."""

    name = "worker"

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    @abstractmethod
    def poll_interval(self) -> float:
        """Seconds to sleep when nothing woke the worker."""

    @abstractmethod
    async def process_next(self) -> bool:
        """Handle the row that is due first; False when none is due."""

    def wake(self) -> None:
        """New rows are due."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current row, then return from ``run``."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the work: a wake that comes during it is not lost
            try:
                worked = await self.process_next()
            except Exception:
                # The database itself failed; wait and try again rather than die.
                log.exception(f"{self.name}.worker_error")
                worked = False
            if worked:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass
