"""Is the daemon well? The database answers and neither queue is stuck; the same report for HTTP and the CLI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailticketd.clock import iso
from mailticketd.metrics import Metrics
from mailticketd.storage import Database
from mailticketd.storage.daemons import DaemonRepository

# How long the report waits for the database before it says it is unreachable.
DATABASE_TIMEOUT = 5.0


async def health_report(db: Database, now: datetime, stuck_after: float, metrics: Metrics | None = None,
                        delivery_stopped: Mapping[str, object] | None = None) -> dict[str, Any]:
    """``ok`` is false when the database does not answer, a mail has waited over ``stuck_after`` seconds to
    be processed, or one has waited that long to leave while nothing left at all (a relay down that long),
    or the delivery worker stopped because the database cannot be written (``delivery_stopped`` says why)."""
    backend = db.dialect.name
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), db.read() as store:
            started = time.perf_counter()
            await store.conn.execute_fetchall("SELECT 1")
            latency = time.perf_counter() - started
            schema_version = await DaemonRepository(store.conn).schema_version()
            pending, failed, inbox_oldest = await store.inbox.stats()
            outbox = await store.outbox.counts()
            outbox_oldest, last_sent, outbox_due = await store.outbox.waiting()
    except Exception as error:
        reason = (f"no answer within {DATABASE_TIMEOUT:g} s" if isinstance(error, TimeoutError)
                  else f"{type(error).__name__}: {error}")
        return {"ok": False, "checked_at": iso(now),
                "database": {"ok": False, "backend": backend, "reachable": False, "error": reason}}
    inbox_wait = _waited(inbox_oldest, now)
    outbox_wait = _waited(outbox_oldest, now)
    # Stuck: a due mail is not even tried (the worker hangs), or mail has waited that long and nothing has
    # left since it was queued (the relay is down). One recipient's server deferring while others get
    # their mail is not a stuck queue.
    nothing_left = outbox_oldest is not None and (last_sent is None or last_sent < outbox_oldest)
    outbox_ok = _waited(outbox_due, now) <= stuck_after and not (outbox_wait > stuck_after and nothing_left)
    report: dict[str, Any] = {
        "checked_at": iso(now),
        "database": {"ok": True, "backend": backend, "reachable": True, "latency_ms": round(latency * 1000, 2),
                     "schema_version": schema_version},
        "inbox": {"ok": inbox_wait <= stuck_after, "pending": pending, "failed": failed,
                  "oldest_waiting_seconds": round(inbox_wait, 1)},
        "outbox": {"ok": outbox_ok, "queued": outbox["queued"], "failed": outbox["failed"],
                   "sent": outbox["sent"], "oldest_waiting_seconds": round(outbox_wait, 1)},
    }
    if delivery_stopped is not None:
        report["outbox"]["ok"] = False
        report["outbox"]["stopped"] = dict(delivery_stopped)
    report["ok"] = report["inbox"]["ok"] and report["outbox"]["ok"]
    if metrics is not None:
        metrics.inbox_backlog.set(pending)
        metrics.inbox_failed.set(failed)
        metrics.outbox_queued.set(outbox["queued"])
        metrics.outbox_failed.set(outbox["failed"])
    return {"ok": report.pop("ok"), **report}


def _waited(since: str | None, now: datetime) -> float:
    if not since:
        return 0.0
    return max(0.0, (now - datetime.fromisoformat(since)).total_seconds())
