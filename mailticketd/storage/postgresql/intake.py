"""Group commit of arriving mail on PostgreSQL: plain inserts on a connection of the intake's own.

Each daemon gathers its SMTP sessions' mails and commits them together, as on
SQLite; several daemons insert side by side (no lock beyond the rows they
write), since an inbox row is only worked on once claimed.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import asyncpg

from mailticketd.clock import iso, utc_now
from mailticketd.storage.intake import BacklogFull, Intake, _Waiting
from mailticketd.storage.turn import WriteTurn


class PostgresIntake(Intake):
    """``Intake`` writing to PostgreSQL; ``connect`` opens its connection."""

    waits_for_pipeline = False  # rows of its own, beside the pipeline's transactions

    def __init__(self, connect: Any, *, max_batch_bytes: int = 64 << 20) -> None:
        # No file and no shared writer turn: the intake's batches only wait for each other.
        super().__init__(Path(os.devnull), WriteTurn(), max_batch_bytes=max_batch_bytes)
        self._connect_pg = connect
        self._pg: asyncpg.Connection | None = None

    async def connect(self) -> None:
        if self._pg is None or self._pg.is_closed():
            self._pg = await self._connect_pg()

    async def _store_batch(self, batch: list[_Waiting]) -> list[int | Exception]:
        if self._pg is None or self._pg.is_closed():
            self._pg = await self._connect_pg()
        conn = self._pg
        loop = asyncio.get_running_loop()
        results: list[int | Exception] = []
        try:
            async with conn.transaction():
                pending = int(await conn.fetchval("SELECT count(*) FROM inbox WHERE status = 'pending'"))
                for waiting in batch:
                    arrival = waiting.arrival
                    if pending >= arrival.max_backlog:
                        results.append(BacklogFull())
                        continue
                    try:  # a spool file: read off the event loop
                        raw = await loop.run_in_executor(None, lambda: b"".join(arrival.chunks()))
                    except Exception as error:  # noqa: BLE001 - this session's spool is gone; the others go on
                        results.append(error)
                        continue
                    inbox_id = await conn.fetchval(
                        "INSERT INTO inbox (received_at, peer, mail_from, rcpt_tos, message_id, size)"
                        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        iso(utc_now()), arrival.peer, arrival.mail_from, json.dumps(list(arrival.rcpt_tos)),
                        arrival.message_id, len(raw),
                    )
                    await conn.execute("INSERT INTO inbox_raw (inbox_id, raw) VALUES ($1, $2)", inbox_id, raw)
                    del raw
                    results.append(int(inbox_id))
                    pending += 1
        except BaseException:
            await self._drop()  # a broken connection is made anew for the next batch
            raise
        return results

    async def _drop(self) -> None:
        if self._pg is not None:
            conn, self._pg = self._pg, None
            conn.terminate()

    async def close(self) -> None:
        await super().close()
        if self._pg is not None:
            conn, self._pg = self._pg, None
            await conn.close()
