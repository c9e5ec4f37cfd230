"""A customer's tickets on the web: the list, one ticket, its files, an answer, and a new ticket.

Routes (all behind the log-in)::

    GET  /tickets                              the list: ?status=open|waiting|closed, ?q= tag or words, ?page=
    GET  /tickets/new                          the form for a new ticket
    POST /tickets/new                          open it (through the inbox and the pipeline, like a mail)
    GET  /tickets/{number}                     the ticket as its customers may read it
    POST /tickets/{number}/answer              answer it (the same path)
    GET  /tickets/{number}/files/{id}/{name}   an attachment, as a download

A ticket the visitor may not see answers 404 exactly like one that does
not exist, and so do its files.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from mailticketd.directory.models import User
from mailticketd.outbox.mailer import Mailer
from mailticketd.storage.helpdesk import STATUS_FILTERS, CustomerArticle
from mailticketd.tickets.models import Ticket
from mailticketd.tickets.subjects import is_generic
from mailticketd.tickets.tags import format_tag
from mailticketd.web.sessions import VISITOR
from mailticketd.web.site import Form, Site, login_required
from mailticketd.web.submit import MAX_SUBJECT, WebMail, one_line

PAGE_SIZE = 50
_MAX_WORDS = 8
_NUMBER = re.compile(r"^\s*\[?\s*(?:[a-z]{1,10}\s*#\s*)?(\d{1,12})\s*\]?\s*$", re.IGNORECASE)
_PAGE = re.compile(r"[0-9]{1,6}")
_FORMATS = {"de": "%d.%m.%Y %H:%M", "en": "%Y-%m-%d %H:%M"}


def status_word(status: str) -> str:
    """The status as customers read it: open, waiting (for you), or closed."""
    return {"pending": "waiting", "closed": "closed"}.get(status, "open")


class Tickets:
    """The pages of a customer's tickets."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def reload(self, mailer: Mailer) -> None:
        """Nothing here depends on the mail settings."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/tickets", self.index)
        app.router.add_get("/tickets/new", self.show_new)
        app.router.add_post("/tickets/new", self.create)
        app.router.add_get(r"/tickets/{number:\d{1,12}}", self.show)
        app.router.add_post(r"/tickets/{number:\d{1,12}}/answer", self.answer)
        app.router.add_get(r"/tickets/{number:\d{1,12}}/files/{file:\d{1,12}}/{name}", self.download)

    # -- the list -------------------------------------------------------------------------------------------------

    @login_required
    async def index(self, request: web.Request) -> web.StreamResponse:
        user = _user(request)
        status = request.query.get("status", "")
        status = status if status in STATUS_FILTERS else ""
        query = request.query.get("q", "")[:200]
        asked = request.query.get("page", "1")
        page = max(1, min(int(asked), 100_000)) if _PAGE.fullmatch(asked) else 1
        number, words = _search(query)
        async with self.site.db.read() as store:
            found = await store.helpdesk.tickets(user, status=status or None, words=words, number=number,
                                                 limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        prefix = self.site.config.mail.tag_prefix
        tickets = [{"number": t.number, "tag": format_tag(prefix, t.number), "subject": t.subject,
                    "status": status_word(t.status), "updated": self._when(t.updated_at, request),
                    "vms": list(t.vms)} for t in found[:PAGE_SIZE]]
        return self.site.page(request, "tickets", tickets=tickets, page=page, more=len(found) > PAGE_SIZE,
                              shown_status=status, query=query, manager=user.is_manager,
                              notice="pending" if "pending" in request.query else None,
                              organisation=user.organisation if user.is_manager else None)

    # -- one ticket -----------------------------------------------------------------------------------------------

    @login_required
    async def show(self, request: web.Request) -> web.StreamResponse:
        ticket = await self._ticket(request)
        if ticket is None:
            return self.site.missing(request)
        notice = next((key for key in ("sent", "created", "pending", "request") if key in request.query), None)
        return await self._ticket_page(request, ticket, notice=notice)

    async def _ticket_page(self, request: web.Request, ticket: Ticket, *, status: int = 200,
                           notice: str | None = None, problem: str | None = None, text: str = "") -> web.Response:
        async with self.site.db.read() as store:
            articles = await store.helpdesk.articles(ticket.id)
            files = await store.helpdesk.attachments(ticket.id)
            participants = await store.helpdesk.participants(ticket.id)
            vms = await store.helpdesk.ticket_vms(ticket.id)
        by_article: dict[int, list[dict[str, Any]]] = {}
        for item in files:
            by_article.setdefault(item.article_id, []).append(
                {"name": item.name, "size": item.size,
                 "url": f"{self.site.prefix}/tickets/{ticket.number}/files/{item.id}/{quote(item.name, safe='')}"})
        config = self.site.config
        reopens = ticket.status != "closed" or not _closed_long_ago(ticket, config.tickets.reopen_window_days,
                                                                    self.site.clock())
        return self.site.page(
            request, "ticket", status=status, notice=notice, problem=problem, text=text,
            ticket={"number": ticket.number, "tag": format_tag(config.mail.tag_prefix, ticket.number),
                    "subject": ticket.subject, "status": status_word(ticket.status),
                    "created": self._when(ticket.created_at, request), "updated": self._when(ticket.updated_at, request),
                    "closed": ticket.status == "closed", "reopens": reopens},
            reopen_days=int(config.tickets.reopen_window_days), vms=list(vms),
            participants=[{"name": p.name, "address": p.address, "role": p.role} for p in participants],
            # A reply of commands alone (#close, #adduser ...) sent customers no text: nothing to show.
            articles=[shown for article in articles
                      if (shown := self._article(article, by_article.get(article.id, []), request))["text"]
                      or shown["files"]],
            max_attachments=config.http.max_attachments, max_megabytes=config.smtp.max_message_size // 1_000_000,
        )

    def _article(self, article: CustomerArticle, files: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
        support = article.kind == "reply"
        # An operator's whole mail holds their quoted notice: only what was sent on is ever shown.
        shown = article.visible_text.strip() if support else (article.visible_text.strip() or article.text.strip())
        # The quoted history of a customer's mail folds away; an operator's quote is their internal notice.
        quoted = article.text.strip() if not support and article.text.strip() != shown else ""
        return {"id": article.id, "support": support,
                "author": None if support else (article.author_name or article.author_address),
                "organisation": None if support else article.author_organisation,
                "when": self._when(article.created_at, request), "text": shown, "quoted": quoted, "files": files}

    @login_required
    async def download(self, request: web.Request) -> web.StreamResponse:
        ticket = await self._ticket(request)
        if ticket is None:
            return self.site.missing(request)
        async with self.site.db.read() as store:
            found = await store.helpdesk.attachment(ticket.id, int(request.match_info["file"]))
        if found is None:
            return self.site.missing(request)
        attachment, content = found
        ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in attachment.name)
        return web.Response(body=content, headers={
            "Content-Type": attachment.content_type,
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''"
                                   f"{quote(attachment.name, safe='')}",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        })

    # -- writing --------------------------------------------------------------------------------------------------

    @login_required
    async def answer(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        ticket = await self._ticket(request)
        if ticket is None:
            return self.site.missing(request)
        form = await self.site.form(request, files=True)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        text = form.get("text")
        problem = form.problem or (None if text.strip() or form.uploads else "empty")
        if problem:
            return await self._ticket_page(request, ticket, status=413 if form.problem else 400, problem=problem,
                                           text=text)
        subject = f"Re: {format_tag(self.site.config.mail.tag_prefix, ticket.number)} {ticket.subject}"
        mail = WebMail(author=_user(request), subject=subject, text=text, uploads=tuple(form.uploads),
                       ticket_number=ticket.number)
        row = await self.site.inbox.submit(mail, self.site.sessions.client(request))
        if row is None or row.ticket_number is None or row.status != "done":
            return self.site.redirect(f"/tickets/{ticket.number}?pending=1")
        return self.site.redirect(f"/tickets/{row.ticket_number}?sent=1#answer-form")

    @login_required
    async def show_new(self, request: web.Request) -> web.StreamResponse:
        return await self._new_page(request, Form())

    @login_required
    async def create(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        form = await self.site.form(request, files=True)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        subject, text = one_line(form.get("subject")), form.get("text")
        problem = form.problem
        if not problem and not subject:
            problem = "no-subject"
        elif not problem and is_generic(subject):
            problem = "generic-subject"
        elif not problem and not text.strip():
            problem = "empty"
        user = _user(request)
        inventory = await self._inventory(user)
        ticked = set(form.all("vm"))
        chosen = tuple(name for name in inventory if name in ticked)
        if problem:
            return await self._new_page(request, form, status=413 if form.problem else 400, problem=problem)
        mail = WebMail(author=user, subject=subject, text=text, uploads=tuple(form.uploads), vms=chosen)
        row = await self.site.inbox.submit(mail, self.site.sessions.client(request))
        if row is None or row.ticket_number is None or row.status != "done":
            return self.site.redirect("/tickets?pending=1")
        return self.site.redirect(f"/tickets/{row.ticket_number}?created=1")

    async def _new_page(self, request: web.Request, form: Form, *, status: int = 200,
                        problem: str | None = None) -> web.Response:
        inventory = await self._inventory(_user(request))
        return self.site.page(request, "new_ticket", status=status, problem=problem, subject=form.get("subject"),
                              text=form.get("text"), vms=inventory, chosen=form.all("vm"),
                              max_subject=MAX_SUBJECT, max_attachments=self.site.config.http.max_attachments,
                              max_megabytes=self.site.config.smtp.max_message_size // 1_000_000)

    # -- helpers --------------------------------------------------------------------------------------------------

    async def _ticket(self, request: web.Request) -> Ticket | None:
        """The ticket named in the path, if the visitor may see it."""
        number = int(request.match_info["number"])
        async with self.site.db.read() as store:
            ticket = await store.tickets.by_number(number)
            if ticket is None or not await store.helpdesk.may_see(_user(request), ticket.id):
                return None
        return ticket

    async def _inventory(self, user: User) -> list[str]:
        if user.organisation_id is None:
            return []
        async with self.site.db.read() as store:
            return [vm.name for vm in await store.vms.list(user.organisation_id)]

    def _when(self, stamp: str, request: web.Request) -> str:
        visitor = request[VISITOR]
        moment = datetime.fromisoformat(stamp).astimezone(ZoneInfo(self.site.config.http.time_zone))
        return moment.strftime(_FORMATS.get(visitor.language, _FORMATS["en"]))


def _user(request: web.Request) -> User:
    visitor = request[VISITOR]
    assert visitor.user is not None
    return visitor.user


def _search(query: str) -> tuple[int | None, list[str]]:
    """A tag or ticket number, else up to a few words that the subject must contain."""
    match = _NUMBER.match(query)
    if match:
        return int(match.group(1)), []
    return None, [word[:50] for word in query.split()[:_MAX_WORDS]]


def _closed_long_ago(ticket: Ticket, days: float, now: datetime) -> bool:
    """Closed longer than the reopen window: an answer opens a new ticket."""
    return ticket.closed_at is not None and now - datetime.fromisoformat(ticket.closed_at) > timedelta(days=days)
