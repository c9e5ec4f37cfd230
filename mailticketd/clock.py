"""Time in one place: timezone-aware UTC, stored as ISO 8601 text."""

from __future__ import annotations

from datetime import datetime, timezone

_UTC = timezone.utc
# The moment formatted last, and its text: a transaction stamps many rows with the same ``now``.
_last: tuple[datetime | None, str] = (None, "")


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(_UTC)


def iso(moment: datetime) -> str:
    """``moment`` as the text the database stores (sorts in time order)."""
    global _last
    last = _last  # one read: other threads may replace it meanwhile
    if moment is last[0]:
        return last[1]
    utc = moment if moment.tzinfo is _UTC else moment.astimezone(_UTC)
    text = "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond)
    _last = (moment, text)
    return text
