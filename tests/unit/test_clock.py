"""clock.iso: the stored text of a moment, the same as datetime's own ISO format in UTC."""

from __future__ import annotations

import random
import zoneinfo
from datetime import datetime, timedelta, timezone

from mailticketd.clock import iso


def _reference(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def test_iso_writes_every_moment_as_utc_with_microseconds() -> None:
    """Moments in UTC, other offsets, a zone across its DST change, whole seconds and naive local times are stored
    as the same sortable UTC text as datetime's own formatting gives, also when one moment is formatted twice."""
    chooser = random.Random(13)
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    moments = [datetime(2024, 3, 31, 2, 30, tzinfo=berlin), datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=berlin),
               datetime(2026, 1, 1, 12), datetime(2026, 6, 1, 0, 0, 0, 0, tzinfo=timezone.utc),
               datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]
    for _ in range(2000):
        zone = chooser.choice([timezone.utc, berlin, timezone(timedelta(minutes=chooser.randint(-900, 900)))])
        moments.append(datetime(chooser.randint(1900, 2100), chooser.randint(1, 12), chooser.randint(1, 28),
                                chooser.randint(0, 23), chooser.randint(0, 59), chooser.randint(0, 59),
                                chooser.choice([0, chooser.randint(0, 999999)]), tzinfo=zone))
    for moment in moments:
        assert iso(moment) == iso(moment) == _reference(moment), moment
