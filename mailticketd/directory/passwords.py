"""Password rules and hashing: Argon2id (memory-hard), computed off the event loop with bounded concurrency.

A hash takes tens of milliseconds of CPU and 64 MiB of memory
(argon2-cffi's RFC 9106 low-memory profile), so it runs in a worker thread,
and a semaphore keeps a burst of requests from using every core or
gigabytes of memory at once.  Passwords are compared in Unicode NFKC form,
so that an umlaut typed on two different keyboards is the same password.
"""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1024
# Hashes computed at the same time; more wait their turn.
CONCURRENT_HASHES = 2

TOO_SHORT = "too-short"
TOO_LONG = "too-long"
MISMATCH = "mismatch"


def normalised(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, repeated: str) -> str | None:
    """Why this new password cannot be used (``TOO_SHORT``, ``TOO_LONG``, ``MISMATCH``), or None."""
    if normalised(password) != normalised(repeated):
        return MISMATCH
    length = len(normalised(password))
    if length < MIN_LENGTH:
        return TOO_SHORT
    if length > MAX_LENGTH:
        return TOO_LONG
    return None


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
