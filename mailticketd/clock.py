"""Time in one place: timezone-aware UTC, stored as ISO 8601 text."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """``moment`` as the text the database stores (sorts in time order)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
