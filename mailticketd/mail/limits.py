"""How much of a header's text the daemon keeps: what a sender controls is capped before it is stored or sent.

The full header stays in the stored raw mail; tickets, articles, users and
outgoing headers hold a prefix of it.  The caps also bound the time the
standard ``email`` package spends folding a header, which grows with the
square of its length.
"""

from __future__ import annotations

# RFC 5322 §2.1.1: no line of a mail may be longer than 998 bytes; a subject beyond that is no subject.
SUBJECT_BYTES = 998
# A display name of a person; longer ones are junk or an attack.
NAME_BYTES = 256


def capped(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character, without trailing blanks."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", "ignore").rstrip()
