"""Find VM names (``de-fr-srv-0815``) in text."""

from __future__ import annotations

import re


def find_vm_names(pattern: re.Pattern[str], *texts: str) -> list[str]:
    """VM names matching ``pattern`` in ``texts``, lower-cased, de-duplicated, in order of appearance.

    A match glued to further name characters (``xde-fr-srv-08150``) is not a VM name.
    """
    names: dict[str, None] = {}
    for text in texts:
        for match in pattern.finditer(text):
            start, end = match.span()
            if start > 0 and _is_name_char(text[start - 1]) or end < len(text) and _is_name_char(text[end]):
                continue
            names.setdefault(match.group(0).lower(), None)
    return list(names)


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "-_"
