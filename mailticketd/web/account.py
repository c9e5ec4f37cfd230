"""Log in, log out, and "Passwort vergessen": the helpdesk's doors.

Routes::

    GET  /login      the form (``?next=`` a page of ours to go on to)
    POST /login      check the password (throttled), start a session
    GET  /logout     a button to log out (a link alone must not log anyone out)
    POST /logout     end the session
    GET  /password   the form asking for the address
    POST /password   mail a fresh single-use link of the verification kind; the same answer for any address
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from mailticketd.directory.verification import issue_verification, login_url, verification_url
from mailticketd.outbox.mailer import Letter, Mailer
from mailticketd.web.links import RENEWAL_WINDOW, RENEWALS_PER_WINDOW
from mailticketd.web.sessions import LOCKED, LOGGED_IN, VISITOR
from mailticketd.web.site import Site

log = structlog.get_logger("mailticketd.web")

# Mails that carry a link to set a password; a person gets a few of them an hour at most.
LINK_KINDS = ("verify", "password")


# A path of ours: one slash, then only characters that no browser reads as the start of another host.
_OWN_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~?=&%+-]{0,500}")


def _next_page(value: str) -> str:
    """Only a path of ours is a place to go on to after logging in (never another site)."""
    if _OWN_PATH.fullmatch(value) and not urlsplit(value).netloc and "%2f" not in value.lower()[:3]:
        return value
    return "/tickets"


class Account:
    """The log-in, log-out and forgotten-password pages."""

    def __init__(self, site: Site, mailer: Mailer, on_queued: Callable[[], None] | None = None) -> None:
        self.site = site
        self.mailer = mailer
        self.on_queued = on_queued
        self._tasks: set[asyncio.Task[None]] = set()

    def reload(self, mailer: Mailer) -> None:
        self.mailer = mailer

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.home)
        app.router.add_get("/login", self.show_login)
        app.router.add_post("/login", self.log_in)
        app.router.add_get("/logout", self.show_logout)
        app.router.add_post("/logout", self.log_out)
        app.router.add_get("/password", self.show_password)
        app.router.add_post("/password", self.send_link)

    async def home(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        return self.site.redirect("/tickets" if visitor.user else "/login")

    async def show_login(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        if visitor.user is not None:
            return self.site.redirect(_next_page(request.query.get("next", "")))
        notice = "logged-out" if "bye" in request.query else None
        return self._login_page(request, notice=notice)

    async def log_in(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        address = form.get("address")
        result = await self.site.sessions.log_in(address, form.get("password"), self.site.sessions.client(request),
                                                 replacing=visitor.session)
        if result.outcome == LOGGED_IN:
            assert result.token is not None
            response = self.site.redirect(_next_page(form.get("next")))
            self.site.sessions.start_session(response, result.token)
            return response
        problem = "locked" if result.outcome == LOCKED else "refused"
        return self._login_page(request, status=429 if problem == "locked" else 401, problem=problem,
                                address=address, next_page=form.get("next"))

    def _login_page(self, request: web.Request, *, status: int = 200, problem: str | None = None,
                    notice: str | None = None, address: str = "", next_page: str | None = None) -> web.Response:
        return self.site.page(request, "login", status=status, problem=problem, notice=notice, address=address[:320],
                              next_page=_next_page(next_page or request.query.get("next", "")),
                              lockout_minutes=int(self.site.config.http.login_lockout_minutes))

    async def show_logout(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        if visitor.user is None:
            return self.site.redirect("/login")
        return self.site.page(request, "logout")

    async def log_out(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        await self.site.sessions.log_out(visitor)
        response = self.site.redirect("/login?bye=1")
        self.site.sessions.end_session(response)
        return response

    async def show_password(self, request: web.Request) -> web.StreamResponse:
        return self.site.page(request, "password", sent=False, hours=self.site.config.http.verification_hours)

    async def send_link(self, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(visitor, form.get("csrf")):
            return self.site.forbidden(request)
        # Mailed after the answer, so that neither the page nor its timing tells whether the address exists.
        task = asyncio.create_task(self._mail_link(form.get("address").strip().lower()[:320]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # The same page whether the address exists, has left, or was asked for too often.
        return self.site.page(request, "password", sent=True, hours=self.site.config.http.verification_hours)

    async def _mail_link(self, address: str) -> None:
        try:
            await self._queue_link(address)
        except Exception:  # the visitor has their answer already; the log has the rest
            log.exception("web.password_link_failed")

    async def _queue_link(self, address: str) -> None:
        config = self.site.config
        now = self.site.clock()
        hours = config.http.verification_hours
        async with self.site.db.transaction() as store:
            user = await store.users.by_address(address) if "@" in address else None
            if user is None or user.status == "inactive":
                return
            if await store.outbox.count_recent(user.address, LINK_KINDS, now - RENEWAL_WINDOW) >= RENEWALS_PER_WINDOW:
                log.info("web.password_link_limited", user_id=user.id)
                return
            token = await issue_verification(store, user.id, hours=hours, now=now)
            context = {"recipient": {"address": user.address, "name": user.name},
                       "verification_url": verification_url(config.http.base_url, token),
                       "verification_hours": hours, "login_url": login_url(config.http.base_url)}
            await self.mailer.send(store, Letter("password", "password", user.address, context,
                                                 config.mail.language_for(user.language), user.name), now=now)
        log.info("web.password_link_sent", user_id=user.id)
        if self.on_queued is not None:
            self.on_queued()

