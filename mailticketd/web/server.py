"""The HTTP listener: aiohttp in the daemon's own event loop, serving the verification pages.

Routes::

    GET  /verify/{token}         the form to set a password (changes nothing)
    POST /verify/{token}         set the password, verify the address
    POST /verify/{token}/renew   mail a fresh link for an expired or used one
    GET  /healthz                JSON health, 200 or 503 (web/operations.py)
    GET  /metrics                Prometheus text format

aiohttp's access log is off: it would write every token into the journal.
Requests are logged at debug level with the route's pattern instead of the
path.  Every page forbids caching, framing, scripts and foreign resources,
and sends no referrer to other sites.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from mailticketd.config import Config
from mailticketd.directory.models import User
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
from mailticketd.web.operations import Operations
from mailticketd.web.pages import Pages

log = structlog.get_logger("mailticketd.web")

# A form with two passwords is small; refuse large bodies before reading them.
MAX_BODY = 64 * 1024
SHUTDOWN_TIMEOUT = 10.0

_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self';"
                                " frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """The aiohttp application and its listener; ``start`` and ``stop`` from the daemon."""

    def __init__(self, config: Config, desk: VerificationDesk, pages: Pages) -> None:
        self.config = config
        self.desk = desk
        self.pages = pages
        self._prefix = urlsplit(config.http.base_url).path.rstrip("/")
        self._base_origin = _origin(config.http.base_url)
        self._runner: web.AppRunner | None = None
        self.operations: Operations | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/verify/{token}", self.show_form)
        app.router.add_post("/verify/{token}", self.set_password)
        app.router.add_post("/verify/{token}/renew", self.renew)
        if self.operations is not None:
            self.operations.add_routes(app)
        return app

    async def start(self) -> None:
        """Listen on ``[http] listen``."""
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.http.host, self.config.http.port).start()
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
        self.pages = pages
        self.desk.config = config
        self.desk.mailer = mailer

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    # -- handlers ---------------------------------------------------------

    async def show_form(self, request: web.Request) -> web.Response:
        outcome = await self.desk.look_up(request.match_info["token"])
        if outcome.state != VALID:
            return self._unusable(request, outcome)
        return self._form(outcome)

    async def set_password(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await request.post()
        password, repeated = str(form.get("password", "")), str(form.get("password_repeat", ""))
        outcome = await self.desk.look_up(token)
        if outcome.state != VALID:
            return self._unusable(request, outcome)
        assert outcome.user is not None
        problem = await check_password(password, repeated, (outcome.user.address, outcome.user.name or ""))
        if problem is not None:
            return self._form(outcome, problem, status=400)
        outcome = await self.desk.set_password(token, password)
        if outcome.state != VERIFIED:
            return self._unusable(request, outcome)
        assert outcome.user is not None
        log.info("web.verified", user_id=outcome.user.id)
        return self._page("verified", outcome.user, address=outcome.user.address)

    async def renew(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        outcome = await self.desk.renew(token)
        if outcome.state == SENT:
            assert outcome.user is not None
            log.info("web.link_renewed", user_id=outcome.user.id)
            return self._page("link_sent", outcome.user, hours=self.config.http.verification_hours)
        if outcome.state == LIMITED:
            return self._page("renew_limited", outcome.user, status=429)
        if outcome.state == VALID:
            # The link still works: back to its form rather than a second one.
            return web.Response(status=303, headers={"Location": f"{self._prefix}/verify/{token}"})
        return self._unusable(request, outcome)

    # -- pages ------------------------------------------------------------

    def _form(self, outcome: Outcome, problem: str | None = None, *, status: int = 200) -> web.Response:
        assert outcome.user is not None
        return self._page("set_password", outcome.user, status=status, address=outcome.user.address, error=problem,
                          min_length=MIN_LENGTH, max_length=MAX_LENGTH)

    def _unusable(self, request: web.Request, outcome: Outcome) -> web.Response:
        """The page for a link that cannot be used: unknown (404), or expired or used (410, offering a new one)."""
        if outcome.state in (EXPIRED, USED):
            token = request.match_info["token"]
            return self._page("link_gone", outcome.user, status=410, reason=outcome.state,
                              renew_action=f"{self._prefix}/verify/{token}/renew")
        assert outcome.state == NOT_FOUND, outcome.state
        return self._page("not_found", None, status=404)

    def _page(self, name: str, user: User | None, *, status: int = 200, **context: object) -> web.Response:
        """Page ``name`` in ``user``'s language (the default one for nobody in particular)."""
        html = self.pages.render(name, self.desk.language(user), **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    # -- middleware -------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse cross-site form posts, add the security headers, log the route (never the token)."""
        if request.method == "POST" and self._cross_site(request):
            response: web.StreamResponse = self._page("forbidden", None, status=403)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as error:  # aiohttp's own 404 and 405
                error.headers.update(_HEADERS)
                _log_request(request, error.status)
                raise
        response.headers.update(_HEADERS)
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


def _log_request(request: web.Request, status: int) -> None:
    route = request.match_info.route.resource
    log.debug("web.request", method=request.method, route=route.canonical if route else None, status=status)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
