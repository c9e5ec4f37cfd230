"""The staff operations on the directory: check the rules, make the change, write the audit entry, queue the mails.

Every operation runs in the caller's transaction, so a change, its audit entry
and the mails it causes commit together or not at all.  A refused operation
raises ``AdminError`` naming the bad value before anything is written.  An
operation that would change nothing writes nothing and is not an error, so
scripts can repeat themselves.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

from mailticketd.config import Config
from mailticketd.directory.contacts import ContactAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.directory.vm_admin import VmAdmin
from mailticketd.directory.models import Organisation, User
from mailticketd.directory.policy import is_authorised
from mailticketd.directory.verification import issue_verification, login_url, verification_url
from mailticketd.outbox.mailer import Letter, Mailer
from mailticketd.storage import Store

ROLES = ("user", "manager")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


class DirectoryAdmin(ContactAdmin, VmAdmin):
    """The staff's changes to organisations, users and VMs, made by ``actor`` at ``now`` inside one transaction.

    ``request`` is set for a change made on a customer's request by mail: the
    ticket, its requester and whether the operator overrode the rule that the
    requester be authorised; every audit entry of the change records it.

    The manager role goes with the authorisation (DESIGN §1): authorising
    makes a manager, withdrawing the authorisation (or leaving) makes a
    normal user, and nobody else may be made a manager.
    """

    def __init__(self, store: Store, config: Config, mailer: Mailer, *, actor: str, now: datetime,
                 request: dict[str, Any] | None = None) -> None:
        self.store = store
        self.config = config
        self.mailer = mailer
        self.actor = actor
        self.now = now
        self.request = request

    # -- looking things up -------------------------------------------------------------------------------------

    async def organisation(self, name: str) -> Organisation:
        found = await self.store.organisations.by_name(name.strip())
        if found is None:
            raise AdminError(f"unknown organisation {name!r}")
        return found

    async def user(self, address: str) -> User:
        found = await self.store.users.by_address(address.strip())
        if found is None:
            raise AdminError(f"unknown user {address!r}", "unknown-user", address=address.strip())
        return found

    async def _reload(self, user: User) -> User:
        found = await self.store.users.by_address(user.address)
        assert found is not None
        return found

    # -- organisations -----------------------------------------------------------------------------------------

    async def create_organisation(self, name: str, *, commercial: str, technical: str,
                                  language: str | None = None) -> Organisation:
        """A new customer: both contacts from the order become authorised managers, the technical one primary."""
        name = " ".join(name.split())
        if not name:
            raise AdminError("the organisation name must not be empty")
        existing = await self.store.organisations.by_name(name)
        if existing is not None:
            raise AdminError(f"organisation {existing.name!r} already exists")
        addresses = list(dict.fromkeys([_address(technical), _address(commercial)]))
        known = {address: await self._free_address(address) for address in addresses}

        organisation = await self.store.organisations.create(name)
        contacts = []
        for address in addresses:
            user = known[address]
            if user is None:
                user = await self.store.users.create(address, organisation_id=organisation.id, role="manager",
                                                     authorised=True, language=language, status="active")
                await self._audit("user.add", address, None, user)
            else:  # an address that wrote to us before the order came in
                await self._join(user, organisation, authorised=True, language=language)
            contacts.append(await self._reload(user))
        technical_contact = contacts[0]
        await self.store.organisations.set_primary_contact(organisation.id, technical_contact.id)
        await self._audit_organisation("org.create", None, await self._organisation(organisation.id))
        for user in contacts:
            await self._welcome(user, organisation.name)
        return await self._organisation(organisation.id)

    # -- users -------------------------------------------------------------------------------------------------

    async def add_user(self, address: str, organisation_name: str, *, manager: bool = False,
                       authorised: bool = False, language: str | None = None, name: str = "",
                       phone: str = "") -> User:
        """Register a new address as a member of an organisation and send it a verification link."""
        address = _address(address)
        _manager_needs_authorisation(address, manager, authorised)
        organisation = await self.organisation(organisation_name)
        existing = await self.store.users.by_address(address)
        if existing is not None and existing.organisation_id is None:
            raise AdminError(f"address {address!r} is already known ({existing.status}, no organisation): "
                             f"use 'mailticketd user assign {address} --org ORGANISATION'")
        await self._free_address(address, organisation)
        user = await self.store.users.create(address, name=" ".join(name.split()), organisation_id=organisation.id,
                                             role="manager" if authorised else "user", authorised=authorised,
                                             language=language, status="active", phone=" ".join(phone.split()))
        await self._audit("user.add", address, None, user)
        await self._welcome(user, organisation.name)
        return user

    async def assign_user(self, address: str, organisation_name: str, *, manager: bool = False,
                          authorised: bool = False, language: str | None = None) -> User:
        """Put a known address without organisation (met in a mail) into one."""
        organisation = await self.organisation(organisation_name)
        user = await self.user(address)
        _manager_needs_authorisation(user.address, manager, authorised)
        if user.status == "inactive":
            raise AdminError(f"user {user.address!r} is inactive", "inactive", address=user.address)
        await self._free_address(user.address, organisation)
        never_verified = user.status == "unverified"
        user = await self._join(user, organisation, authorised=authorised, language=language)
        if never_verified:  # registered by staff now (active); the link lets them set a password
            await self._welcome(user, organisation.name)
        return user

    async def authorise(self, address: str) -> User:
        """Make a member an authorised contact without end date, and so a manager."""
        user = await self._member(address)
        if user.authorised and user.authorised_until is None and user.role == "manager":
            return user
        await self.store.users.set_authorisation(user.id, True)
        await self.store.users.set_role(user.id, "manager")
        return await self._changed("user.authorise", user)

    async def authorise_temporarily(self, address: str, *, until: date, note: str) -> User:
        """Authorise a member until a day, for an organisation left without authorised contacts."""
        user = await self._member(address)
        note = " ".join(note.split())
        if not note:
            raise AdminError("a temporary authorisation needs --note saying why (e.g. the register extract)")
        if until <= self.now.astimezone(timezone.utc).date():
            raise AdminError(f"the end date {until.isoformat()} is not in the future")
        if user.authorised and user.authorised_until is None:
            raise AdminError(f"user {user.address!r} is already an authorised contact without end date")
        assert user.organisation_id is not None
        others = [member.address for member in await self.store.users.members(user.organisation_id)
                  if member.id != user.id and is_authorised(member, self.now)]
        if others:
            raise AdminError(f"organisation {user.organisation!r} has authorised contacts ({', '.join(others)}): "
                             "a temporary authorisation is only for an organisation without any")
        if user.authorised_until == until.isoformat() and user.authorisation_note == note and user.role == "manager":
            return user
        await self.store.users.set_authorisation(user.id, True, until=until.isoformat(), note=note)
        await self.store.users.set_role(user.id, "manager")
        after = await self._changed("user.authorise", user)
        # The person learns that they may act for the organisation, until when, and what for.
        context = {"recipient": _person(after), "organisation": after.organisation, "until": until.isoformat(),
                   "login_url": login_url(self.config.http.base_url)}
        await self._send(Letter("authorisation", "temporary_authorisation", after.address, context,
                                self._language(after), after.name))
        return after

    async def deauthorise(self, address: str) -> User:
        """Withdraw the authorisation and with it the manager role; if nobody authorised is left, tell operators."""
        user = await self._member(address)
        if not user.authorised and user.role == "user":
            return user
        await self.store.users.set_authorisation(user.id, False)
        await self.store.users.set_role(user.id, "user")
        after = await self._changed("user.deauthorise", user)
        assert user.organisation_id is not None
        if is_authorised(user, self.now) and not await self.authorised_contacts(user.organisation_id):
            await self._tell_operators(await self._organisation(user.organisation_id), after, "deauthorised", [])
        return after

    async def set_role(self, address: str, role: str) -> User:
        """The role follows the authorisation: this only confirms it, or says which command changes it."""
        if role not in ROLES:
            raise AdminError(f"unknown role {role!r} (expected {' or '.join(ROLES)})")
        user = await self._member(address)
        if role == "manager" and not user.authorised:
            raise AdminError(f"user {user.address!r} is not an authorised contact, and only authorised contacts "
                             f"may be managers: use 'mailticketd user authorise {user.address}'")
        if role == "user" and user.authorised:
            raise AdminError(f"user {user.address!r} is an authorised contact, and authorised contacts are "
                             f"managers: use 'mailticketd user deauthorise {user.address}'")
        if user.role == role:
            return user
        await self.store.users.set_role(user.id, role)
        return await self._changed("user.role", user)

    async def delete_user(self, address: str) -> User:
        """Remove a user entered by mistake: never one with tickets, never a primary or monitoring contact."""
        user = await self.user(address)
        if await self.store.users.has_tickets(user.id):
            raise AdminError(f"user {user.address!r} has tickets and is never deleted: "
                             f"use 'mailticketd user deactivate {user.address}' instead")
        if user.monitoring_contact:
            raise AdminError(f"user {user.address!r} is a monitoring contact: "
                             f"use 'mailticketd monitoring unset {user.address}' first")
        if user.organisation_id is not None:
            organisation = await self._organisation(user.organisation_id)
            if organisation.primary_contact_id == user.id:
                raise AdminError(f"user {user.address!r} is the primary contact of {organisation.name!r}: "
                                 "set another primary contact first")
        await self.store.users.delete(user.id)
        await self._audit("user.delete", user.address, user, None)
        return user

    # -- helpers -----------------------------------------------------------------------------------------------

    async def _free_address(self, address: str, organisation: Organisation | None = None) -> User | None:
        """The user of ``address`` if it is in no organisation yet; refused if it belongs to one."""
        if self.config.mail.is_local(address) or address in self.config.operators.addresses:
            raise AdminError(f"address {address!r} is the desk's own or an operator's, not a customer's", "own-address",
                             address=address)
        user = await self.store.users.by_address(address)
        if user is None or user.organisation_id is None:
            if user is not None and user.status == "inactive":
                raise AdminError(f"address {address!r} belongs to an inactive user", "inactive", address=address)
            return user
        if organisation is not None and user.organisation_id == organisation.id:
            raise AdminError(f"user {address!r} already belongs to organisation {organisation.name!r}",
                             "already-member", address=address, organisation=organisation.name)
        raise AdminError(f"address {address!r} already belongs to organisation {user.organisation!r}; "
                         "a person who is a contact for a second organisation needs a second address",
                         "other-organisation", address=address, organisation=user.organisation or "")

    async def _member(self, address: str) -> User:
        """A user who belongs to an organisation and has not left it."""
        user = await self.user(address)
        if user.organisation_id is None:
            raise AdminError(f"user {user.address!r} belongs to no organisation: "
                             f"use 'mailticketd user assign {user.address} --org ORGANISATION' first",
                             "no-organisation", address=user.address)
        if user.status == "inactive":
            raise AdminError(f"user {user.address!r} is inactive (has left {user.organisation!r})", "inactive",
                             address=user.address)
        return user

    async def _join(self, user: User, organisation: Organisation, *, authorised: bool, language: str | None) -> User:
        await self.store.users.assign(user.id, organisation.id)
        await self.store.users.set_role(user.id, "manager" if authorised else "user")
        if authorised:
            await self.store.users.set_authorisation(user.id, True)
        if language:
            await self.store.users.set_language(user.id, language)
        return await self._changed("user.assign", user)

    async def _changed(self, action: str, before: User) -> User:
        after = await self._reload(before)
        await self._audit(action, before.address, before, after)
        return after

    async def _audit(self, action: str, subject: str, before: User | None, after: User | None) -> None:
        await self.store.audit.record(at=self.now, actor=self.actor, action=action, subject=subject,
                                      before=_user_state(before), after=_user_state(after), request=self.request)

    async def _audit_organisation(self, action: str, before: Organisation | None, after: Organisation) -> None:
        await self.store.audit.record(at=self.now, actor=self.actor, action=action, subject=after.name,
                                      before=await self._organisation_state(before),
                                      after=await self._organisation_state(after), request=self.request)

    async def _organisation(self, organisation_id: int) -> Organisation:
        found = await self.store.organisations.by_id(organisation_id)
        assert found is not None
        return found

    async def _organisation_state(self, organisation: Organisation | None) -> dict[str, Any] | None:
        if organisation is None:
            return None
        primary = None
        if organisation.primary_contact_id is not None:
            contact = (await self.store.users.by_ids([organisation.primary_contact_id])).get(
                organisation.primary_contact_id)
            primary = contact.address if contact else None
        return {"name": organisation.name, "primary_contact": primary, "flags": list(organisation.flags)}

    async def _welcome(self, user: User, organisation: str) -> None:
        """The verification link with which a staff-registered contact sets a password."""
        hours = self.config.http.verification_hours
        token = await issue_verification(self.store, user.id, hours=hours, now=self.now)
        context = {"recipient": _person(user), "organisation": organisation, "authorised": user.authorised,
                   "manager": user.role == "manager",
                   "verification_url": verification_url(self.config.http.base_url, token),
                   "verification_hours": hours, "login_url": login_url(self.config.http.base_url)}
        await self._send(Letter("verify", "welcome", user.address, context, self._language(user), user.name))

    async def _send(self, letter: Letter) -> None:
        await self.mailer.send(self.store, letter, now=self.now)

    def _language(self, user: User) -> str:
        return self.config.mail.language_for(user.language)


def _address(text: str) -> str:
    address = text.strip().lower()
    if not _ADDRESS.match(address):
        raise AdminError(f"{text!r} is not an e-mail address", "not-an-address", address=text)
    return address


def _manager_needs_authorisation(address: str, manager: bool, authorised: bool) -> None:
    if manager and not authorised:
        raise AdminError(f"only authorised contacts may be managers: add --authorised, or later use "
                         f"'mailticketd user authorise {address}'")


def _user_state(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"address": user.address, "organisation": user.organisation, "status": user.status, "role": user.role,
            "authorised": user.authorised, "authorised_until": user.authorised_until,
            "authorisation_note": user.authorisation_note, "monitoring_contact": user.monitoring_contact,
            "language": user.language, "name": user.name, "phone": user.phone}


def _person(user: User) -> dict[str, str]:
    return {"address": user.address, "name": user.name}
