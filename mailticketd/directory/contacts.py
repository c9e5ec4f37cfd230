"""The contacts part of the staff operations: primary and monitoring contacts, people who leave, and the
organisation left without anyone authorised to give instructions.

Mixed into ``DirectoryAdmin``.  Whoever is asked to act gets a mail in the
same transaction: the authorised contacts for a replacement when a contact
leaves, the operators when nobody is left who could be asked.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from mailticketd.config import Config
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import MONITORING_CONTACT_LEFT, PRIMARY_CONTACT_LEFT, Organisation, User
from mailticketd.directory.policy import is_authorised
from mailticketd.outbox.mailer import Letter
from mailticketd.storage import Store

_PHONE = re.compile(r"^[+(0-9][0-9 ()/.-]{2,39}$")
# The operators' mail about an organisation that nobody may give instructions for any more.
UNREPRESENTED = "organisation-unrepresented"


class ContactAdmin:
    """Provided by ``DirectoryAdmin``: the store, the config, the actor, the time, look-ups, audit and mail."""

    store: Store
    config: Config
    actor: str
    now: datetime

    async def organisation(self, name: str) -> Organisation:
        raise NotImplementedError

    async def user(self, address: str) -> User:
        raise NotImplementedError

    async def _member(self, address: str) -> User:
        raise NotImplementedError

    async def _organisation(self, organisation_id: int) -> Organisation:
        raise NotImplementedError

    async def _changed(self, action: str, before: User) -> User:
        raise NotImplementedError

    async def _audit_organisation(self, action: str, before: Organisation | None, after: Organisation) -> None:
        raise NotImplementedError

    async def _send(self, letter: Letter) -> None:
        raise NotImplementedError

    def _language(self, user: User) -> str:
        raise NotImplementedError

    async def set_primary_contact(self, organisation_name: str, address: str) -> Organisation:
        """Make a member who has not left the organisation's primary contact."""
        organisation = await self.organisation(organisation_name)
        user = await self.user(address)
        if user.organisation_id != organisation.id:
            where = f"organisation {user.organisation!r}" if user.organisation else "no organisation"
            raise AdminError(f"user {user.address!r} belongs to {where}, not to {organisation.name!r}: "
                             "the primary contact must be a member of the organisation", "not-member",
                             address=user.address, organisation=organisation.name)
        if user.status == "inactive":
            raise AdminError(f"user {user.address!r} is inactive and cannot be the primary contact", "inactive",
                             address=user.address)
        if organisation.primary_contact_id == user.id and PRIMARY_CONTACT_LEFT not in organisation.flags:
            return organisation
        await self.store.organisations.set_primary_contact(organisation.id, user.id)
        await self.store.organisations.set_flags(organisation.id, set(organisation.flags) - {PRIMARY_CONTACT_LEFT})
        after = await self._organisation(organisation.id)
        await self._audit_organisation("primary.set", organisation, after)
        return after

    async def set_monitoring_contact(self, address: str, monitoring: bool, *, name: str | None = None,
                                     phone: str | None = None) -> User:
        """Set or clear the monitoring-contact flag, with the name and phone number it is reached by; setting one
        clears the organisation's reminder to."""
        user = await self._member(address) if monitoring else await self.user(address)
        name = " ".join(name.split()) if name is not None else None
        phone = " ".join(phone.split()) if phone is not None else None
        if phone and not _PHONE.match(phone):
            raise AdminError(f"{phone!r} is not a phone number (digits, spaces and + ( ) / - . only)", "bad-phone",
                             phone=phone)
        details = (name if name else user.name, phone if phone else user.phone)
        if user.monitoring_contact == monitoring and details == (user.name, user.phone):
            return user
        if details != (user.name, user.phone):
            await self.store.users.set_contact_details(user.id, name=name or None, phone=phone or None)
        if user.monitoring_contact != monitoring:
            await self.store.users.set_monitoring_contact(user.id, monitoring)
        action = "monitoring.set" if monitoring else "monitoring.unset"
        user = await self._changed(action if user.monitoring_contact != monitoring else "user.contact", user)
        if monitoring and user.organisation_id is not None:
            organisation = await self._organisation(user.organisation_id)
            if MONITORING_CONTACT_LEFT in organisation.flags:
                await self.store.organisations.set_flags(organisation.id,
                                                         set(organisation.flags) - {MONITORING_CONTACT_LEFT})
                await self._audit_organisation("org.flags", organisation, await self._organisation(organisation.id))
        return user

    async def deactivate(self, address: str) -> tuple[User, list[str]]:
        """Mark a user who left; if they were primary or monitoring contact, flag the organisation and ask its
        authorised contacts for a replacement, or tell the operators when nobody is left to ask.  Returns the
        user and the addresses asked."""
        user = await self.user(address)
        if user.status == "inactive":
            return user, []
        was_authorised = is_authorised(user, self.now)
        await self.store.users.deactivate(user.id)
        after = await self._changed("user.deactivate", user)
        if user.organisation_id is None:
            return after, []
        organisation = await self._organisation(user.organisation_id)
        roles = [role for role, held in (("primary", organisation.primary_contact_id == user.id),
                                         ("monitoring", user.monitoring_contact)) if held]
        asked: list[str] = []
        if roles:
            flags = set(organisation.flags)
            if "primary" in roles:
                flags.add(PRIMARY_CONTACT_LEFT)
                await self.store.organisations.set_primary_contact(organisation.id, None)
            if "monitoring" in roles:
                flags.add(MONITORING_CONTACT_LEFT)
            await self.store.organisations.set_flags(organisation.id, flags)
            await self._audit_organisation("org.contact-left", organisation,
                                           await self._organisation(organisation.id))
            for member in await self.authorised_contacts(organisation.id):
                context = {"recipient": _person(member), "organisation": organisation.name,
                           "left": _person(user), "roles": roles,
                           "organisation_url": f"{self.config.http.base_url}/organisation"}
                await self._send(Letter("contact-left", "contact_left", member.address, context,
                                        self._language(member), member.name))
                asked.append(member.address)
        if (was_authorised or roles) and not asked and not await self.authorised_contacts(organisation.id):
            await self._tell_operators(organisation, after, "left", roles)
        return after, asked

    async def authorised_contacts(self, organisation_id: int) -> list[User]:
        """The members whose authorisation holds now."""
        return [member for member in await self.store.users.members(organisation_id)
                if is_authorised(member, self.now)]

    async def _tell_operators(self, organisation: Organisation, person: User, cause: str, roles: list[str]) -> None:
        """The organisation has no authorised contact left: every operator is told at once what to do."""
        context: dict[str, Any] = {"organisation": organisation.name, "person": _person(person), "cause": cause,
                                   "roles": roles}
        for operator in self.config.operators.addresses:
            await self._send(Letter(UNREPRESENTED, "no_authorised_contact", operator, context,
                                    self.config.mail.default_language))


def _person(user: User) -> dict[str, str]:
    return {"address": user.address, "name": user.name}
