"""Password rules and hashing: Argon2id (memory-hard), computed off the event loop with bounded concurrency.

A new password must also be hard to guess: zxcvbn estimates how many
guesses it takes (common passwords, names, the person's own address,
keyboard rows, repeats, dates) and a score under ``MIN_SCORE`` is refused,
with the kind of weakness for the page to explain.  The estimate takes up
to a tenth of a second, so ``check_password`` runs it in a worker thread.

A hash takes tens of milliseconds of CPU and 64 MiB of memory
(argon2-cffi's RFC 9106 low-memory profile), so it runs in a worker thread,
and a semaphore keeps a burst of requests from using every core or
gigabytes of memory at once.  Passwords are compared in Unicode NFKC form,
so that an umlaut typed on two different keyboards is the same password.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 1024
# Hashes computed at the same time; more wait their turn.
CONCURRENT_HASHES = 2

TOO_SHORT = "too-short"
TOO_LONG = "too-long"
MISMATCH = "mismatch"
# Guessable, by what gives it away (the page words each): a common password or word, the person's own
# name or address, a pattern (repeats, sequences, keyboard rows), a date or year, or just too little.
WEAK_COMMON = "weak-common"
WEAK_PERSONAL = "weak-personal"
WEAK_PATTERN = "weak-pattern"
WEAK_DATE = "weak-date"
WEAK = "weak"

# zxcvbn's scale: 3 is "safely unguessable", about 10^8 guesses and more.
MIN_SCORE = 3
# zxcvbn's own limit, and where its time would grow; the rest of a longer password only adds strength.
_ESTIMATED = 72
_PATTERNS = {"repeat": WEAK_PATTERN, "sequence": WEAK_PATTERN, "spatial": WEAK_PATTERN,
             "date": WEAK_DATE, "regex": WEAK_DATE}


def normalised(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, repeated: str, personal: Iterable[str] = ()) -> str | None:
    """Why this new password cannot be used (``TOO_SHORT``, ``TOO_LONG``, ``MISMATCH``, a ``WEAK…``), or None.

    ``personal`` are words of the person (address, name) that a password must not be built on.  CPU-bound
    for up to a tenth of a second: in the event loop, use ``check_password``.
    """
    if normalised(password) != normalised(repeated):
        return MISMATCH
    length = len(normalised(password))
    if length < MIN_LENGTH:
        return TOO_SHORT
    if length > MAX_LENGTH:
        return TOO_LONG
    own = [normalised(text).lower() for text in personal if text]
    if _mostly_personal(normalised(password).lower(), own):
        return WEAK_PERSONAL
    return _weakness(normalised(password)[:_ESTIMATED], _personal_words(own))


async def check_password(password: str, repeated: str, personal: Iterable[str] = ()) -> str | None:
    """``password_problem`` in a worker thread."""
    return await asyncio.to_thread(password_problem, password, repeated, tuple(personal))


def _weakness(password: str, personal: list[str]) -> str | None:
    estimate: dict[str, Any] = zxcvbn(password, user_inputs=personal)
    if int(estimate["score"]) >= MIN_SCORE:
        return None
    # Name the weakness by the longest part of the password a guesser would find.
    found = [match for match in estimate["sequence"] if match["pattern"] != "bruteforce"]
    if not found:
        return WEAK
    match = max(found, key=lambda m: len(str(m["token"])))
    if match["pattern"] == "dictionary":
        return WEAK_PERSONAL if match.get("dictionary_name") == "user_inputs" else WEAK_COMMON
    return _PATTERNS.get(str(match["pattern"]), WEAK)


def _mostly_personal(password: str, personal: list[str]) -> bool:
    """The address, its local part or the name (separators aside), with fewer than ``MIN_LENGTH`` characters
    besides: "AnnaSchmidt2024" for Anna Schmidt."""
    wholes = set(personal) | {text.partition("@")[0] for text in personal if "@" in text}
    letters = _letters(password)
    return any(len(whole) >= 3 and whole in letters and len(letters) - len(whole) < MIN_LENGTH
               for whole in map(_letters, wholes))


def _letters(text: str) -> str:
    return "".join(char for char in text if char.isalnum())


def _personal_words(personal: list[str]) -> list[str]:
    """The address's and name's parts, as a guesser who knows the person would try them."""
    words: list[str] = []
    for text in personal:
        words.append(text)
        words.extend(part for part in re.split(r"[\W_]+", text) if len(part) >= 3)
    return words


class Passwords:
    """Hashes and checks passwords with Argon2id in worker threads, a few at a time."""

    def __init__(self, hasher: PasswordHasher | None = None, concurrency: int = CONCURRENT_HASHES) -> None:
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        """The encoded Argon2id hash (``$argon2id$…``) of ``password``."""
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, normalised(password))

    async def verify(self, encoded: str, password: str) -> bool:
        """True if ``password`` matches the stored hash ``encoded``."""
        async with self._slots:
            try:
                return await asyncio.to_thread(self.hasher.verify, encoded, normalised(password))
            except (VerificationError, InvalidHashError):
                return False
