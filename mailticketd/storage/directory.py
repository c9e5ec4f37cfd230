"""SQL for the directory: organisations, users and the VM inventory."""

from __future__ import annotations

import builtins

import json
from collections.abc import Iterable

import aiosqlite

from mailticketd.clock import iso, utc_now
from mailticketd.directory.models import Organisation, User, Vm
from mailticketd.storage.connection import Connection

_USER_COLUMNS = """u.id, u.address, u.name, u.organisation_id, o.name, u.status, u.role,
    u.authorised, u.monitoring_contact, u.language, u.authorised_until, u.authorisation_note, u.verified_at,
    u.delivery_failure, u.phone"""
_USER_FROM = "users u LEFT JOIN organisations o ON o.id = u.organisation_id"
_ORGANISATION_COLUMNS = "id, name, primary_contact_id, flags, created_at"


def _user(values: aiosqlite.Row) -> User:
    return User(
        id=values[0], address=values[1], name=values[2], organisation_id=values[3], organisation=values[4],
        status=values[5], role=values[6], authorised=bool(values[7]), monitoring_contact=bool(values[8]),
        language=values[9], authorised_until=values[10], authorisation_note=values[11], verified_at=values[12],
        delivery_failure=values[13], phone=values[14],
    )


def _organisation(values: aiosqlite.Row) -> Organisation:
    return Organisation(id=values[0], name=values[1], primary_contact_id=values[2],
                        flags=tuple(json.loads(values[3])), created_at=values[4])


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


class OrganisationRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def create(self, name: str) -> Organisation:
        created_at = iso(utc_now())
        cursor = await self.conn.execute(
            "INSERT INTO organisations (name, created_at) VALUES (?, ?) RETURNING id", (name, created_at)
        )
        organisation_id = int((await cursor.fetchone())[0])
        return Organisation(id=organisation_id, name=name, primary_contact_id=None, created_at=created_at)

    async def set_primary_contact(self, organisation_id: int, user_id: int | None) -> None:
        await self.conn.execute(
            "UPDATE organisations SET primary_contact_id = ? WHERE id = ?", (user_id, organisation_id)
        )

    async def set_flags(self, organisation_id: int, flags: Iterable[str]) -> None:
        await self.conn.execute(
            "UPDATE organisations SET flags = ? WHERE id = ?", (json.dumps(sorted(set(flags))), organisation_id)
        )

    async def by_id(self, organisation_id: int) -> Organisation | None:
        async with self.conn.execute(
            f"SELECT {_ORGANISATION_COLUMNS} FROM organisations WHERE id = ?", (organisation_id,)
        ) as cursor:
            values = await cursor.fetchone()
        return _organisation(values) if values else None

    async def by_name(self, name: str) -> Organisation | None:
        """The organisation called ``name``, compared case-insensitively."""
        async with self.conn.execute(
            f"SELECT {_ORGANISATION_COLUMNS} FROM organisations WHERE name = ?", (name,)
        ) as cursor:
            values = await cursor.fetchone()
        return _organisation(values) if values else None

    async def list(self) -> list[Organisation]:
        async with self.conn.execute(
            f"SELECT {_ORGANISATION_COLUMNS} FROM organisations ORDER BY name"
        ) as cursor:
            return [_organisation(values) for values in await cursor.fetchall()]


class UserRepository:
    def __init__(self, conn: Connection) -> None:
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
        phone: str = "",
    ) -> User:
        """Register ``address`` (stored lower-cased; unique across all organisations)."""
        await self.conn.execute(
            "INSERT INTO users (address, name, organisation_id, status, role, authorised, language, phone,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (address.lower(), name, organisation_id, status, role, int(authorised), language, phone,
             iso(utc_now())),
        )
        user = await self.by_address(address)
        assert user is not None
        return user

    async def list(self) -> list[User]:
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} ORDER BY o.name IS NULL, o.name, u.address"
        ) as cursor:
            return [_user(values) for values in await cursor.fetchall()]

    async def members(self, organisation_id: int) -> builtins.list[User]:
        """The organisation's users, inactive ones included, by address."""
        async with self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM {_USER_FROM} WHERE u.organisation_id = ? ORDER BY u.address",
            (organisation_id,),
        ) as cursor:
            return [_user(values) for values in await cursor.fetchall()]

    async def assign(self, user_id: int, organisation_id: int) -> None:
        """Put a user into an organisation; registered by staff now, an unverified user becomes active."""
        await self.conn.execute(
            "UPDATE users SET organisation_id = ?,"
            " status = CASE status WHEN 'unverified' THEN 'active' ELSE status END WHERE id = ?",
            (organisation_id, user_id),
        )

    async def set_role(self, user_id: int, role: str) -> None:
        await self.conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user_id))

    async def set_authorisation(self, user_id: int, authorised: bool, *, until: str | None = None,
                                note: str | None = None) -> None:
        """Authorise (for good, or ``until`` a day with a ``note``) or withdraw the authorisation."""
        await self.conn.execute(
            "UPDATE users SET authorised = ?, authorised_until = ?, authorisation_note = ? WHERE id = ?",
            (int(authorised), until if authorised else None, note if authorised else None, user_id),
        )

    async def set_monitoring_contact(self, user_id: int, monitoring: bool) -> None:
        await self.conn.execute("UPDATE users SET monitoring_contact = ? WHERE id = ?", (int(monitoring), user_id))

    async def set_contact_details(self, user_id: int, *, name: str | None = None, phone: str | None = None) -> None:
        """Change the name and/or the phone number a contact is reached by; None keeps the stored value."""
        await self.conn.execute("UPDATE users SET name = COALESCE(?, name), phone = COALESCE(?, phone) WHERE id = ?",
                                (name, phone, user_id))

    async def undeliverable(self, user_id: int) -> bool:
        """True if the last mail to this user failed for good: a failure recorded after the last mail sent."""
        async with self.conn.execute(
            "SELECT u.delivery_failed_at IS NOT NULL AND u.delivery_failed_at >= COALESCE("
            " (SELECT MAX(x.sent_at) FROM outbox x WHERE x.rcpt_to = u.address AND x.status = 'sent'), '')"
            " FROM users u WHERE u.id = ?", (user_id,),
        ) as cursor:
            values = await cursor.fetchone()
        return bool(values and values[0])

    async def set_language(self, user_id: int, language: str | None) -> None:
        await self.conn.execute("UPDATE users SET language = ? WHERE id = ?", (language, user_id))

    async def deactivate(self, user_id: int) -> None:
        """Mark a user who left: inactive, no longer authorised, manager or monitoring contact; the row stays."""
        await self.conn.execute(
            "UPDATE users SET status = 'inactive', role = 'user', authorised = 0, authorised_until = NULL,"
            " authorisation_note = NULL, monitoring_contact = 0 WHERE id = ?", (user_id,)
        )
        # Someone who left is logged out everywhere, and no link of theirs works any more.
        await self.conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
        await self.conn.execute("UPDATE verification_tokens SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
                                (iso(utc_now()), user_id))

    async def has_tickets(self, user_id: int) -> bool:
        """True if the user requested, takes part in or wrote to any ticket."""
        async with self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM tickets WHERE requester_id = :id)"
            " OR EXISTS (SELECT 1 FROM participants WHERE user_id = :id)"
            " OR EXISTS (SELECT 1 FROM articles WHERE author_id = :id)", {"id": user_id}
        ) as cursor:
            values = await cursor.fetchone()
        return bool(values and values[0])

    async def delete(self, user_id: int) -> None:
        """Remove a user without tickets, and their verification tokens."""
        await self.conn.execute("DELETE FROM verification_tokens WHERE user_id = ?", (user_id,))
        await self.conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
        await self.conn.execute("DELETE FROM users WHERE id = ?", (user_id,))

    async def mark_delivery_failed(self, address: str, failure: str) -> bool:
        """Flag an address whose mail bounced; False if it belongs to no user."""
        cursor = await self.conn.execute(
            "UPDATE users SET delivery_failed_at = ?, delivery_failure = ? WHERE address = ?",
            (iso(utc_now()), failure, address.lower()),
        )
        return cursor.rowcount > 0



class VmRepository:
    def __init__(self, conn: Connection) -> None:
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

    async def list(self, organisation_id: int | None = None) -> list[Vm]:
        """The inventory, or one organisation's part of it, by name."""
        where, params = ("WHERE v.organisation_id = ?", (organisation_id,)) if organisation_id else ("", ())
        async with self.conn.execute(
            "SELECT v.id, v.name, v.organisation_id, o.name FROM vms v JOIN organisations o"
            f" ON o.id = v.organisation_id {where} ORDER BY v.name", params,
        ) as cursor:
            return [Vm(*values) for values in await cursor.fetchall()]
