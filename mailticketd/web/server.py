"""The HTTP listener: aiohttp in the daemon's own event loop, serving the verification pages and the helpdesk.

Routes (the helpdesk's in web/account.py, web/tickets.py and web/organisation.py)::

    GET  /verify/{token}         the form to set a password (changes nothing)
    POST /verify/{token}         set the password, verify the address
    POST /verify/{token}/renew   mail a fresh link for an expired or used one
    GET  /healthz                JSON health, 200 or 503 (web/operations.py)
    GET  /metrics                Prometheus text format

aiohttp's access log is off: it would write every token into the journal.
Requests are logged at debug level with the route's pattern instead of the
path.  Every page forbids caching, framing, scripts and foreign resources,
and sends no referrer at all.  Every form carries a CSRF token
(web/sessions.py); a POST without the right one changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.directory.models import User
from mailticketd.directory.policy import is_authorised
from mailticketd.outbox.mailer import Mailer
from mailticketd.directory.passwords import MAX_LENGTH, MIN_LENGTH, check_password
from mailticketd.web.links import (
    EXPIRED,
    LIMITED,
    NOT_FOUND,
    SENT,
    USED,
    VALID,
    VERIFIED,
    Outcome,
    VerificationDesk,
)
from mailticketd.web.limits import LimitedSite
from mailticketd.web.operations import Operations
from mailticketd.web.pages import Pages
from mailticketd.web.sessions import VISITOR
from mailticketd.web.site import Site

log = structlog.get_logger("mailticketd.web")

SHUTDOWN_TIMEOUT = 10.0
# Room for the form fields around the files of an answer (the files themselves count against max_message_size).
_FORM_OVERHEAD = 1024 * 1024

_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
                                " frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Area(Protocol):
    """One part of the helpdesk: its routes, and what a reload gives it."""

    def add_routes(self, app: web.Application) -> None: ...

    def reload(self, mailer: Mailer) -> None: ...


class WebServer:
    """The aiohttp application and its listener; ``start`` and ``stop`` from the daemon."""

    def __init__(self, config: Config, desk: VerificationDesk, site: Site, areas: Sequence[Area]) -> None:
        self.config = config
        self.desk = desk
        self.site = site
        self.areas = areas
        self._prefix = urlsplit(config.http.base_url).path.rstrip("/")
        self._base_origin = _origin(config.http.base_url)
        self._runner: web.AppRunner | None = None
        self.operations: Operations | None = None

    @property
    def pages(self) -> Pages:
        return self.site.pages

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard],
                              client_max_size=self.config.smtp.max_message_size + _FORM_OVERHEAD)
        app.router.add_get("/verify/{token}", self.show_form)
        app.router.add_post("/verify/{token}", self.set_password)
        app.router.add_post("/verify/{token}/renew", self.renew)
        for area in self.areas:
            area.add_routes(app)
        if self.operations is not None:
            self.operations.add_routes(app)
        return app

    async def start(self) -> None:
        """Listen on ``[http] listen``."""
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await LimitedSite.for_config(runner, self.config).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and let requests in flight finish; safe to call twice."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def reload(self, config: Config, pages: Pages, mailer: Mailer) -> None:
        """New pages and mail settings; the listener and its address stay."""
        self.config = config
        self.desk.config = config
        self.desk.mailer = mailer
        self.site.config = self.site.sessions.config = self.site.inbox.config = config
        self.site.pages = pages
        for area in self.areas:
            area.reload(mailer)

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    # -- handlers ---------------------------------------------------------

    async def show_form(self, request: web.Request) -> web.Response:
        outcome = await self.desk.look_up(request.match_info["token"])
        if outcome.state != VALID:
            return self._unusable(request, outcome)
        return self._form(request, outcome)

    async def set_password(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(request[VISITOR], form.get("csrf")):
            return self._page(request, "forbidden", None, status=403)
        password, repeated = form.get("password"), form.get("password_repeat")
        outcome = await self.desk.look_up(token)
        if outcome.state != VALID:
            return self._unusable(request, outcome)
        assert outcome.user is not None
        problem = await check_password(password, repeated, (outcome.user.address, outcome.user.name or ""))
        if problem is not None:
            return self._form(request, outcome, problem, status=400)
        outcome = await self.desk.set_password(token, password)
        if outcome.state != VERIFIED:
            return self._unusable(request, outcome)
        assert outcome.user is not None
        log.info("web.verified", user_id=outcome.user.id)
        user = outcome.user
        return self._page(request, "verified", user, address=user.address, organisation=user.organisation,
                          authorised=is_authorised(user, utc_now()), manager=user.is_manager,
                          may_log_in=user.status != "inactive")

    async def renew(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await self.site.form(request)
        if form is None or not self.site.sessions.csrf_ok(request[VISITOR], form.get("csrf")):
            return self._page(request, "forbidden", None, status=403)
        outcome = await self.desk.renew(token)
        if outcome.state == SENT:
            assert outcome.user is not None
            log.info("web.link_renewed", user_id=outcome.user.id)
            return self._page(request, "link_sent", outcome.user, hours=self.config.http.verification_hours)
        if outcome.state == LIMITED:
            return self._page(request, "renew_limited", outcome.user, status=429)
        if outcome.state == VALID:
            # The link still works: back to its form rather than a second one.
            return web.Response(status=303, headers={"Location": f"{self._prefix}/verify/{token}"})
        return self._unusable(request, outcome)

    # -- pages ------------------------------------------------------------

    def _form(self, request: web.Request, outcome: Outcome, problem: str | None = None, *,
              status: int = 200) -> web.Response:
        assert outcome.user is not None
        return self._page(request, "set_password", outcome.user, status=status, address=outcome.user.address,
                          error=problem, min_length=MIN_LENGTH, max_length=MAX_LENGTH)

    def _unusable(self, request: web.Request, outcome: Outcome) -> web.Response:
        """The page for a link that cannot be used: unknown (404), or expired or used (410, offering a new one)."""
        if outcome.state in (EXPIRED, USED):
            token = request.match_info["token"]
            return self._page(request, "link_gone", outcome.user, status=410, reason=outcome.state,
                              renew_action=f"{self._prefix}/verify/{token}/renew")
        assert outcome.state == NOT_FOUND, outcome.state
        return self._page(request, "not_found", None, status=404)

    def _page(self, request: web.Request, name: str, user: User | None, *, status: int = 200,
              **context: object) -> web.Response:
        """Page ``name`` in the language of the link's ``user`` (the visitor's for nobody in particular)."""
        visitor = request[VISITOR]
        language = self.desk.language(user) if user is not None else visitor.language
        html = self.pages.render(name, language, csrf=visitor.csrf, prefix=self._prefix, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    # -- middleware -------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Know the visitor, refuse cross-site form posts, add the security headers, log the route (never the
        token)."""
        visitor = await self.site.sessions.visitor(request)
        request[VISITOR] = visitor
        if request.method == "POST" and self._cross_site(request):
            response: web.StreamResponse = self._page(request, "forbidden", None, status=403)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as error:  # aiohttp's own 404, 405 and 413
                _add_headers(error.headers)
                _log_request(request, error.status)
                raise
        _add_headers(response.headers)
        self.site.sessions.set_cookies(response, visitor)
        _log_request(request, response.status)
        return response

    def _cross_site(self, request: web.Request) -> bool:
        """A browser says the form was posted from another site (the token in the URL is the real secret)."""
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return True
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return False
        own = {self._base_origin, f"http://{request.host}", f"https://{request.host}"}
        return origin.lower() not in own


def _add_headers(headers: MutableMapping[str, str]) -> None:
    """The security headers; a response that sets its own (stricter) policy keeps it."""
    for name, value in _HEADERS.items():
        headers.setdefault(name, value)


def _log_request(request: web.Request, status: int) -> None:
    route = request.match_info.route.resource
    log.debug("web.request", method=request.method, route=route.canonical if route else None, status=status)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
