"""Outlook's ``Thread-Index``: continue the customer's conversation so Outlook groups it.

The header is base64 of a 22-byte header block (6 bytes of FILETIME, 16 bytes
of GUID) followed by a 5-byte child block per reply, whose bits carry the time
elapsed since the header's time.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timezone

_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
# A sender's index longer than this (some 600 replies deep) is not continued: what a sender writes there would
# otherwise go, 5 bytes longer each time, into every mail of the ticket.
MAX_INDEX = 4096


def _filetime(moment: datetime) -> int:
    return int((moment - _EPOCH).total_seconds() * 10_000_000)


def new_thread_index(now: datetime) -> str:
    """A fresh index for a conversation that has none."""
    header = (_filetime(now) >> 16).to_bytes(6, "big") + uuid.uuid4().bytes
    return base64.b64encode(header).decode("ascii")


def continued_thread_index(sender_index: str | None, now: datetime) -> str:
    """The base of a new ticket's conversation: the sender's index when Outlook could have written it, else new."""
    if sender_index is not None and _decoded(sender_index) is not None:
        return sender_index.strip()
    return new_thread_index(now)


def _decoded(index: str) -> bytes | None:
    """The bytes of a well-formed index (a header block and whole child blocks, within ``MAX_INDEX``), else None."""
    if len(index) > MAX_INDEX:
        return None
    try:
        raw = base64.b64decode(index.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= 22 and (len(raw) - 22) % 5 == 0 else None


def child_thread_index(parent: str | None, now: datetime) -> str:
    """The index of a reply to a mail whose index was ``parent`` (a new one if it is missing, broken or too long)."""
    raw = _decoded(parent or "")
    if raw is None:
        return new_thread_index(now)
    start = int.from_bytes(raw[:6], "big") << 16
    delta = max(0, _filetime(now) - start)
    # Bit 0 of the child block is the delta code: 0 means the delta is shifted by 18 bits.
    if delta < (1 << 49):
        value = (delta >> 18) & 0x7FFFFFFF
        code = 0
    else:
        value = (delta >> 23) & 0x7FFFFFFF
        code = 1
    block = ((code << 39) | (value << 8) | (uuid.uuid4().int & 0xFF)).to_bytes(5, "big")
    return base64.b64encode(raw + block).decode("ascii")
