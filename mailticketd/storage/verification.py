"""SQL for verification links: tokens stored as their sha256 only, and what using one changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.directory.models import User
from mailticketd.storage.directory import _USER_COLUMNS, _user
from mailticketd.storage.connection import Connection


@dataclass(frozen=True)
class VerificationLink:
    """One stored token (never its plain text) and the user it was made for."""

    id: int
    sha256: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    user: User

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class VerificationRepository:
    """Verification tokens, stored as their sha256 only."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def add(self, user_id: int, sha256: str, expires_at: str) -> None:
        await self.conn.execute(
            "INSERT INTO verification_tokens (user_id, sha256, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (user_id, sha256, iso(utc_now()), expires_at),
        )

    async def by_sha256(self, sha256: str) -> VerificationLink | None:
        """The token with this hash and its user, or None."""
        async with self.conn.execute(
            f"SELECT t.id, t.sha256, t.created_at, t.expires_at, t.used_at, {_USER_COLUMNS}"
            " FROM verification_tokens t JOIN users u ON u.id = t.user_id"
            " LEFT JOIN organisations o ON o.id = u.organisation_id WHERE t.sha256 = ?",
            (sha256,),
        ) as cursor:
            values = await cursor.fetchone()
        if values is None:
            return None
        return VerificationLink(
            id=values[0], sha256=values[1], created_at=datetime.fromisoformat(values[2]),
            expires_at=datetime.fromisoformat(values[3]),
            used_at=datetime.fromisoformat(values[4]) if values[4] else None,
            user=_user(cast(aiosqlite.Row, values[5:])),
        )

    async def use_all(self, user_id: int, now: datetime) -> int:
        """Mark every open token of ``user_id`` used (the one just used and any older ones); returns how many."""
        cursor = await self.conn.execute(
            "UPDATE verification_tokens SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
            (iso(now), user_id),
        )
        return cursor.rowcount

    async def set_password(self, user_id: int, password_hash: str, now: datetime) -> None:
        """Store the hash and the time of verification; an unverified user becomes active, nobody else changes."""
        await self.conn.execute(
            "UPDATE users SET password_hash = ?, verified_at = ?,"
            " status = CASE status WHEN 'unverified' THEN 'active' ELSE status END WHERE id = ?",
            (password_hash, iso(now), user_id),
        )
        # A new password ends every session that the old one opened, and the lock-out of the old one's guesses.
        await self.conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
        await self.conn.execute("DELETE FROM login_failures WHERE key = 'address:' || "
                                "(SELECT address FROM users WHERE id = ?)", (user_id,))

    async def password_hash(self, user_id: int) -> str | None:
        """The stored password hash of ``user_id``, if any."""
        async with self.conn.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)) as cursor:
            values = await cursor.fetchone()
        return values[0] if values else None
