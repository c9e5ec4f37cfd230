"""SQL for the directory: organisations, users and the VM inventory."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.directory.models import Organisation, User, Vm

_USER_COLUMNS = """u.id, u.address, u.name, u.organisation_id, o.name, u.status, u.role,
    u.authorised, u.monitoring_contact, u.language"""
_USER_FROM = "users u LEFT JOIN organisations o ON o.id = u.organisation_id"


def _user(values: aiosqlite.Row) -> User:
    return User(
        id=values[0], address=values[1], name=values[2], organisation_id=values[3], organisation=values[4],
        status=values[5], role=values[6], authorised=bool(values[7]), monitoring_contact=bool(values[8]),
        language=values[9],
    )


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class OrganisationRepository:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def create(self, name: str) -> Organisation:
        cursor = await self.conn.execute(
            "INSERT INTO organisations (name, created_at) VALUES (?, ?)", (name, iso(utc_now()))
        )
        assert cursor.lastrowid is not None
        return Organisation(id=cursor.lastrowid, name=name, primary_contact_id=None)

    async def set_primary_contact(self, organisation_id: int, user_id: int | None) -> None:
        await self.conn.execute(
            "UPDATE organisations SET primary_contact_id = ? WHERE id = ?", (user_id, organisation_id)
        )

    async def by_id(self, organisation_id: int) -> Organisation | None:
        async with self.conn.execute(
            "SELECT id, name, primary_contact_id FROM organisations WHERE id = ?", (organisation_id,)
        ) as cursor:
            values = await cursor.fetchone()
        return Organisation(*values) if values else None

    async def by_name(self, name: str) -> Organisation | None:
        async with self.conn.execute(
            "SELECT id, name, primary_contact_id FROM organisations WHERE name = ?", (name,)
        ) as cursor:
            values = await cursor.fetchone()
        return Organisation(*values) if values else None


class UserRepository:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def by_address(self, address: str) -> User | None:
        found = await self.by_addresses([address])
        return found.get(address.lower())

    async def by_addresses(self, addresses: Iterable[str]) -> dict[str, User]:
        """Known users among ``addresses``, keyed by lower-cased address."""
        wanted = list(dict.fromkeys(address.lower() for address in addresses))
        if not wanted:
            return {}
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.address IN ({_marks(len(wanted))})", wanted
        ) as cursor:
            users = [_user(values) for values in await cursor.fetchall()]
        return {user.address.lower(): user for user in users}

    async def by_ids(self, ids: Iterable[int]) -> dict[int, User]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.id IN ({_marks(len(wanted))})", wanted
        ) as cursor:
            return {user.id: user for user in map(_user, await cursor.fetchall())}

    async def create(
        self,
        address: str,
        *,
        name: str = "",
        organisation_id: int | None = None,
        status: str = "unverified",
        role: str = "user",
        authorised: bool = False,
        language: str | None = None,
    ) -> User:
        """Register ``address`` (stored lower-cased; unique across all organisations)."""
        await self.conn.execute(
            "INSERT INTO users (address, name, organisation_id, status, role, authorised, language, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (address.lower(), name, organisation_id, status, role, int(authorised), language, iso(utc_now())),
        )
        user = await self.by_address(address)
        assert user is not None
        return user

    async def list(self) -> list[User]:
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} ORDER BY o.name IS NULL, o.name, u.address"
        ) as cursor:
            return [_user(values) for values in await cursor.fetchall()]

    async def mark_delivery_failed(self, address: str, failure: str) -> bool:
        """Flag an address whose mail bounced; False if it belongs to no user."""
        cursor = await self.conn.execute(
            "UPDATE users SET delivery_failed_at = ?, delivery_failure = ? WHERE address = ?",
            (iso(utc_now()), failure, address.lower()),
        )
        return cursor.rowcount > 0

    async def delivery_failures(self) -> dict[str, str]:
        """Addresses flagged for failed delivery, with the reported failure."""
        async with self.conn.execute(
            "SELECT address, delivery_failure FROM users WHERE delivery_failed_at IS NOT NULL"
        ) as cursor:
            return {values[0]: values[1] for values in await cursor.fetchall()}


class VerificationRepository:
    """Verification tokens, stored as their sha256 only."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def add(self, user_id: int, sha256: str, expires_at: str) -> None:
        await self.conn.execute(
            "INSERT INTO verification_tokens (user_id, sha256, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (user_id, sha256, iso(utc_now()), expires_at),
        )


class VmRepository:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def add(self, name: str, organisation_id: int) -> None:
        await self.conn.execute(
            "INSERT INTO vms (name, organisation_id, created_at) VALUES (?, ?, ?)",
            (name.lower(), organisation_id, iso(utc_now())),
        )

    async def by_names(self, names: Iterable[str]) -> dict[str, Vm]:
        """Inventory entries among ``names``, keyed by lower-cased name."""
        wanted = list(dict.fromkeys(name.lower() for name in names))
        if not wanted:
            return {}
        async with self.conn.execute(
            "SELECT v.id, v.name, v.organisation_id, o.name FROM vms v JOIN organisations o"
            f" ON o.id = v.organisation_id WHERE v.name IN ({_marks(len(wanted))})",
            wanted,
        ) as cursor:
            return {values[1].lower(): Vm(*values) for values in await cursor.fetchall()}
