"""Render rows as an aligned plain-text table for people at a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(item) for item in value) or "-"
    return " ".join(str(value).split())


def render_table(columns: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]], *, width: int = 60) -> str:
    """``columns`` are (heading, key) pairs; long cells are cut to ``width`` characters."""
    cells = [[_cell(row.get(key))[:width] for _, key in columns] for row in rows]
    headings = [heading for heading, _ in columns]
    widths = [max(len(text) for text in column) for column in zip(headings, *cells)]
    lines = ["  ".join(text.ljust(size) for text, size in zip(line, widths)).rstrip()
             for line in (headings, *cells)]
    return "\n".join(lines)
