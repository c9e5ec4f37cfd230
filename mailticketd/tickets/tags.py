"""Subject tags such as ``[MH#10042]``: write them, and find them anywhere in a subject."""

from __future__ import annotations

import re
from functools import lru_cache


def format_tag(prefix: str, number: int) -> str:
    """The exact tag every outgoing subject carries."""
    return f"[{prefix}{number}]"


@lru_cache(maxsize=8)
def _tag_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\[\s*" + re.escape(prefix.strip()) + r"\s*(\d{1,12})\s*\]", re.IGNORECASE)


def find_tag_numbers(prefix: str, subject: str) -> list[int]:
    """Ticket numbers named by tags in ``subject``, in order, without repeats.

    The search runs over the whole subject, so any chain of ``Re:``, ``AW:``,
    ``WG:`` or ``Fwd:`` in front (or a list prefix) does not hide a tag.
    """
    numbers = (int(match.group(1)) for match in _tag_pattern(prefix).finditer(subject))
    return list(dict.fromkeys(numbers))


def strip_tags(prefix: str, subject: str) -> str:
    """``subject`` without any of our tags, for a new ticket that must not name another one."""
    stripped = _tag_pattern(prefix).sub(" ", subject)
    return " ".join(stripped.split())
