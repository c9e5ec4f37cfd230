"""The refusal every staff operation may raise."""

from __future__ import annotations


class AdminError(Exception):
    """A staff operation is refused; the message names the bad value and, where there is one, the way out."""
