"""SQL for the daemons working on a database: each one's heartbeat, and the list ``mailticketd status`` shows.

Also the schema version the database holds (asked of the dialect: ``PRAGMA user_version`` on SQLite, the
``schema_version`` table on PostgreSQL), for ``/healthz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mailticketd.clock import iso
from mailticketd.storage.connection import Connection

# A daemon beats every HEARTBEAT seconds; unseen for GONE_AFTER it is shown as gone, after FORGET_AFTER deleted.
HEARTBEAT = 5.0
GONE_AFTER = timedelta(seconds=30)
FORGET_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class DaemonRow:
    owner: str
    host: str
    pid: int
    version: str
    started_at: str
    last_seen: str
    stopped_at: str | None

    def state(self, now: datetime) -> str:
        """``running`` (seen lately), ``stopped`` (stopped cleanly) or ``gone`` (unseen for ``GONE_AFTER``)."""
        if self.stopped_at is not None:
            return "stopped"
        return "running" if datetime.fromisoformat(self.last_seen) >= now - GONE_AFTER else "gone"


class DaemonRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def beat(self, *, owner: str, host: str, pid: int, version: str, started_at: datetime,
                   now: datetime) -> None:
        """This daemon is alive: its row made or its ``last_seen`` moved on."""
        await self.conn.execute(
            "INSERT INTO daemons (owner, host, pid, version, started_at, last_seen) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET last_seen = excluded.last_seen, stopped_at = NULL",
            (owner, host, pid, version, iso(started_at), iso(now)))

    async def stopped(self, owner: str, now: datetime) -> None:
        await self.conn.execute("UPDATE daemons SET last_seen = ?, stopped_at = ? WHERE owner = ?",
                                (iso(now), iso(now), owner))

    async def forget(self, now: datetime) -> None:
        """Delete the rows of daemons last seen over ``FORGET_AFTER`` ago."""
        await self.conn.execute("DELETE FROM daemons WHERE last_seen < ?", (iso(now - FORGET_AFTER),))

    async def list(self) -> list[DaemonRow]:
        rows = await self.conn.execute_fetchall(
            "SELECT owner, host, pid, version, started_at, last_seen, stopped_at FROM daemons"
            " ORDER BY started_at, owner")
        return [DaemonRow(str(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), str(row[5]),
                          None if row[6] is None else str(row[6])) for row in rows]

    async def schema_version(self) -> int:
        """The schema version the database holds."""
        if self.conn.dialect.name == "sqlite":
            rows = await self.conn.execute_fetchall("PRAGMA user_version")
        else:
            rows = await self.conn.execute_fetchall("SELECT coalesce(max(version), 0) FROM schema_version")
        return int(rows[0][0]) if rows else 0
