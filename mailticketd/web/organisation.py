"""The organisation page for managers: its people, and the requests that only authorised contacts may file.

Routes (behind the log-in, managers only; anyone else gets 404)::

    GET  /organisation                   people, roles, contacts, and the three request forms
    POST /organisation/requests/{kind}   account | contact | left: opens a request ticket for the staff

A request is an ordinary new ticket written through the web (the same
inbox and pipeline), worded from ``templates/<lang>/request_<kind>.txt`` so
that the operator sees what is asked and the one command line that carries
it out (``#adduser``, ``#authorise``, ``#primary``, ``#monitoring``,
``#left``).  People who left are not listed; nobody reads "inaktiv" here.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mailticketd.directory.models import User
from mailticketd.directory.policy import is_authorised
from mailticketd.mail.templates import Templates
from mailticketd.outbox.mailer import Mailer
from mailticketd.web.sessions import VISITOR
from mailticketd.web.site import Form, Site, login_required
from mailticketd.web.submit import WebMail, one_line

REQUEST_KINDS = ("account", "contact", "left")
CONTACT_ROLES = ("primary", "monitoring")
_ADDRESS = re.compile(r"^[^@\s<>,;\"()\[\]]{1,64}@[^@\s<>,;\"()\[\]]{1,255}\.[^@\s<>,;\"()\[\]]{1,63}$")
_PHONE = re.compile(r"^[0-9+()/ .-]{0,40}$")


class OrganisationPages:
    """What a manager sees of the organisation, and the requests authorised contacts file."""

    def __init__(self, site: Site, templates: Templates) -> None:
        self.site = site
        self.templates = templates

    def reload(self, mailer: Mailer) -> None:
        self.templates = mailer.templates

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/organisation", self.show)
        app.router.add_post("/organisation/requests/{kind}", self.request)

    @login_required
    async def show(self, request: web.Request) -> web.StreamResponse:
        if not _visitor(request).is_manager:
            return self.site.missing(request)
        return await self._page(request)

    async def _page(self, request: web.Request, *, status: int = 200, problem: str | None = None,
                    kind: str | None = None, form: Form | None = None) -> web.Response:
        user = _visitor(request)
        assert user.organisation_id is not None
        async with self.site.db.read() as store:
            organisation = await store.organisations.by_id(user.organisation_id)
            people = await store.helpdesk.colleagues(user.organisation_id)
        assert organisation is not None
        now = self.site.clock()
        rows = [{"name": person.name, "address": person.address, "manager": person.is_manager,
                 "authorised": is_authorised(person, now), "until": person.authorised_until if person.is_temporary
                 else None, "primary": organisation.primary_contact_id == person.id,
                 "monitoring": person.monitoring_contact,
                 "phone": person.phone if person.monitoring_contact else ""} for person in people]
        return self.site.page(request, "organisation", status=status, organisation=organisation.name, people=rows,
                              may_request=is_authorised(user, now), problem=problem, kind=kind,
                              values={name: (form.get(name) if form else "") for name in
                                      ("name", "address", "phone", "role", "note", "who")},
                              others=[row for row in rows if row["address"] != user.address])

    @login_required
    async def request(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        user = _visitor(request)
        kind = request.match_info["kind"]
        if not user.is_manager or kind not in REQUEST_KINDS:
            return self.site.missing(request)
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        if not is_authorised(user, self.site.clock()):
            return await self._page(request, status=403, problem="not-authorised", kind=kind)
        async with self.site.db.read() as store:
            members = {person.address: person for person in await store.helpdesk.colleagues(user.organisation_id or 0)}
        context, problem = _request_context(kind, form, members)
        if problem:
            return await self._page(request, status=400, problem=problem, kind=kind, form=form)
        context["organisation"] = user.organisation
        context["requester"] = {"name": user.name, "address": user.address}
        rendered = self.templates.render(f"request_{kind}", visitor.language, **context)
        mail = WebMail(author=user, subject=one_line(rendered.subject), text=rendered.body)
        row = await self.site.inbox.submit(mail, self.site.sessions.client(request))
        if row is None or row.ticket_number is None or row.status != "done":
            return self.site.redirect("/tickets?pending=1")
        return self.site.redirect(f"/tickets/{row.ticket_number}?request=1")


def _request_context(kind: str, form: Form, members: dict[str, User]) -> tuple[dict[str, Any], str | None]:
    """What the request template needs, or the first problem with the form."""
    name = one_line(form.get("name"), 100)
    address = form.get("address").strip().lower()
    phone = one_line(form.get("phone"), 40)
    note = form.get("note").strip()[:2000]
    if kind == "left":
        who = form.get("who").strip().lower()
        if who not in members:
            return {}, "unknown-person"
        person = members[who]
        return {"person": {"name": person.name, "address": person.address}, "note": note}, None
    if not _ADDRESS.match(address):
        return {}, "bad-address"
    if not _PHONE.match(phone):
        return {}, "bad-phone"
    if kind == "account":
        if address in members:
            return {}, "already-member"
        if not name:
            return {}, "no-name"
        return {"person": {"name": name, "address": address, "phone": phone},
                "authorise": form.get("authorise") == "yes", "note": note}, None
    role = form.get("role")
    if role not in CONTACT_ROLES:
        return {}, "no-role"
    if not name or not phone:
        return {}, "contact-details"
    return {"person": {"name": name, "address": address, "phone": phone}, "role": role,
            "member": address in members, "note": note}, None


def _visitor(request: web.Request) -> User:
    visitor = request[VISITOR]
    assert visitor.user is not None
    return visitor.user
