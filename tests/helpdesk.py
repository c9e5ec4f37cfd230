"""Helpers for the web helpdesk tests: an organisation with people who have passwords, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from argon2 import PasswordHasher
from yarl import URL

from mailticketd.app import Daemon
from mailticketd.clock import utc_now

PASSWORD = "Korrekt Pferd Batterie"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_HASH = PasswordHasher().hash(PASSWORD)

# The people of the examples: a manager (authorised), a colleague, a manager who is not authorised,
# someone of another organisation, and someone in no organisation at all.
MANAGER = "anna@kunde.example"
COLLEAGUE = "bob@kunde.example"
OTHER = "carl@andere.example"
STRANGER = "dora@frei.example"


@dataclass(frozen=True)
class People:
    organisation_id: int
    other_organisation_id: int


async def add_person(daemon: Daemon, address: str, *, organisation_id: int | None, password: bool = True,
                     **fields: Any) -> None:
    """A person with a verified address and (unless told otherwise) the password ``PASSWORD``."""
    async with daemon.db.transaction() as store:
        user = await store.users.create(address, organisation_id=organisation_id,
                                        **({"status": "active"} | fields))
        if password:
            await store.verifications.set_password(user.id, _HASH, utc_now())


async def people(daemon: Daemon) -> People:
    """Kunde GmbH (two VMs) with a manager and a colleague; Andere AG with one person and a VM; a stranger."""
    async with daemon.db.transaction() as store:
        kunde = await store.organisations.create("Kunde GmbH")
        andere = await store.organisations.create("Andere AG")
        await store.vms.add("de-fr-srv-0815", kunde.id)
        await store.vms.add("de-fr-srv-0816", kunde.id)
        await store.vms.add("de-be-srv-4711", andere.id)
    await add_person(daemon, MANAGER, organisation_id=kunde.id, name="Anna Admin", role="manager", authorised=True)
    await add_person(daemon, COLLEAGUE, organisation_id=kunde.id, name="Bob Kollege")
    await add_person(daemon, OTHER, organisation_id=andere.id, name="Carl Fremd", role="manager", authorised=True)
    await add_person(daemon, STRANGER, organisation_id=None, name="Dora")
    async with daemon.db.transaction() as store:
        await store.organisations.set_primary_contact(kunde.id, (await store.users.by_address(MANAGER)).id)  # type: ignore[union-attr]
    return People(kunde.id, andere.id)


def csrf_in(page: str) -> str:
    found = _CSRF.search(page)
    assert found, page
    return found.group(1)


class Browserless:
    """An HTTP client that keeps cookies like a browser and fills in each form's CSRF token."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.session.get(path, **kwargs) as response:
            return response.status, await response.text()

    async def token(self, path: str = "/login") -> str:
        status, page = await self.get(path)
        return csrf_in(page)

    async def post(self, path: str, data: dict[str, Any] | aiohttp.FormData, *, form_page: str = "/login",
                   allow_redirects: bool = True) -> tuple[int, str, aiohttp.ClientResponse]:
        """POST ``data`` with the CSRF token of ``form_page`` added (unless ``data`` carries one)."""
        if isinstance(data, dict) and "csrf" not in data:
            data = {**data, "csrf": await self.token(form_page)}
        async with self.session.post(path, data=data, allow_redirects=allow_redirects) as response:
            return response.status, await response.text(), response

    async def log_in(self, address: str, password: str = PASSWORD) -> tuple[int, str]:
        status, page, _ = await self.post("/login", {"address": address, "password": password})
        return status, page

    def cookie(self, name: str) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@asynccontextmanager
async def browserless(daemon: Daemon, *, address: str | None = None) -> AsyncIterator[Browserless]:
    """A client of the daemon's HTTP listener; logged in as ``address`` when given."""
    base = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        client = Browserless(session)
        if address is not None:
            status, page = await client.log_in(address)
            assert status == 200 and "Abmelden" in page, page
        yield client


def url(daemon: Daemon) -> URL:
    return URL(f"http://127.0.0.1:{daemon.http_port}")
