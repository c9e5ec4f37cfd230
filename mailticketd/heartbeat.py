"""Each daemon's heartbeat in the ``daemons`` table, so that ``mailticketd status`` lists every daemon on the
database (several share one PostgreSQL; on SQLite it is the one daemon)."""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

from mailticketd import __version__
from mailticketd.clock import utc_now
from mailticketd.storage import Database
from mailticketd.storage.daemons import HEARTBEAT, DaemonRepository

log = structlog.get_logger("mailticketd.heartbeat")


class Heartbeat:
    """Beats once at ``start`` (a daemon is listed as soon as it serves), then every ``interval`` seconds."""

    def __init__(self, db: Database, interval: float = HEARTBEAT) -> None:
        self.db = db
        self.interval = interval
        self.started_at = utc_now()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Beat now; a database that cannot be written (read-only, full) is logged, and the daemon still serves
        (the SMTP side answers 451 meanwhile), beating again later."""
        try:
            await self._beat(forget=True)
        except Exception as error:  # noqa: BLE001 - the daemon serves without its row for a while
            log.warning("heartbeat.failed", error=f"{type(error).__name__}: {error}")
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        """Stop beating and mark this daemon stopped (a daemon killed leaves its row to be shown as gone)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        try:
            async with self.db.transaction() as store:
                await DaemonRepository(store.conn).stopped(self.db.owner, utc_now())
        except Exception as error:  # noqa: BLE001 - stopping goes on without it
            log.warning("heartbeat.failed", error=f"{type(error).__name__}: {error}")

    async def _run(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.interval)
            beats += 1
            try:
                await self._beat(forget=beats % 720 == 0)  # old rows are cleared about once an hour
            except Exception as error:  # noqa: BLE001 - a database away for a while: beat again later
                log.warning("heartbeat.failed", error=f"{type(error).__name__}: {error}")

    async def _beat(self, *, forget: bool) -> None:
        now = utc_now()
        async with self.db.transaction() as store:
            daemons = DaemonRepository(store.conn)
            await daemons.beat(owner=self.db.owner, host=socket.gethostname(), pid=os.getpid(), version=__version__,
                               started_at=self.started_at, now=now)
            if forget:
                await daemons.forget(now)
