"""Who is asking: helpdesk sessions stored server-side, log-in with throttling, and CSRF tokens.

A session is a random token in an ``HttpOnly``, ``SameSite=Lax`` cookie
(``Secure`` behind https); the database keeps only its sha256, so a copy of
the database opens no session.  A session ends when its person logs out,
leaves (inactive), sets a new password, or after ``[http]
session_idle_hours`` without a request or ``session_max_hours`` in all.
Every request checks the person again, so a deactivation ends their
sessions at once, on every daemon sharing the database.

Every form carries a CSRF token: the session's own, or for someone not
logged in a random one from a cookie of its own (double submit).

A failed log-in is counted for its address and for its client address.
After ``login_failures`` failures of one address within
``login_lockout_minutes`` (ten times that for one client), further tries
are refused for that long whatever the password.  A wrong password, an
unknown address and a person who may not log in get the same answer after
the same work (one Argon2 verification), so the answer tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from mailticketd.clock import utc_now
from mailticketd.config import Config, LANGUAGES
from mailticketd.directory.models import User
from mailticketd.directory.passwords import Passwords
from mailticketd.storage import Database

log = structlog.get_logger("mailticketd.web")

SESSION_COOKIE = "mailticketd_session"
CSRF_COOKIE = "mailticketd_csrf"
# A session's last-seen time is written at most this often (a page view is a read, not a write).
TOUCH_INTERVAL = timedelta(minutes=1)
# One client address may fail this many times as often as one person's address.
CLIENT_FACTOR = 10

# What a log-in attempt came to.
LOGGED_IN = "logged-in"
REFUSED = "refused"
LOCKED = "locked"


@dataclass(frozen=True)
class Visitor:
    """The person behind a request (None when not logged in), the form token, and the page language."""

    user: User | None
    csrf: str
    language: str
    session: str | None = None  # the session's sha256
    new_csrf_cookie: bool = False  # a fresh anonymous token to set on the answer

    def page_user(self) -> dict[str, object] | None:
        """What the page layout shows of the person."""
        if self.user is None:
            return None
        return {"name": self.user.name, "address": self.user.address, "manager": self.user.is_manager}


@dataclass(frozen=True)
class LogIn:
    outcome: str  # LOGGED_IN | REFUSED | LOCKED
    user: User | None = None
    token: str | None = None  # the new session's cookie value


# Where each request keeps its visitor (set by the listener's middleware before any handler runs).
VISITOR = web.RequestKey("visitor", Visitor)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def may_log_in(user: User | None, password_hash: str | None) -> bool:
    """Only active people with a verified address and a password."""
    return (user is not None and user.status == "active" and user.verified_at is not None
            and password_hash is not None)


class SessionDesk:
    """Sessions, log-in and CSRF over one database."""

    def __init__(self, config: Config, db: Database, passwords: Passwords, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.db = db
        self.passwords = passwords
        self.clock = clock
        self._dummy_hash: str | None = None

    # -- each request ---------------------------------------------------------------------------------------------

    async def visitor(self, request: web.Request) -> Visitor:
        """The logged-in person of a valid session, else an anonymous visitor with a CSRF token."""
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            sha256 = token_hash(token)
            now = self.clock()
            async with self.db.read() as store:
                found = await store.helpdesk.session(sha256)
            http = self.config.http
            if found is not None:
                expired = (now - found.seen_at > timedelta(hours=http.session_idle_hours)
                           or now - found.created_at > timedelta(hours=http.session_max_hours))
                if expired or not may_log_in(found.user, found.password_hash):
                    async with self.db.transaction() as store:
                        await store.helpdesk.end_session(sha256)
                else:
                    if now - found.seen_at > TOUCH_INTERVAL:
                        async with self.db.transaction() as store:
                            await store.helpdesk.touch_session(sha256, now)
                    return Visitor(found.user, found.csrf, self.config.mail.language_for(found.user.language),
                                   session=sha256)
        csrf = request.cookies.get(CSRF_COOKIE, "")
        fresh = len(csrf) < 32
        if fresh:
            csrf = secrets.token_urlsafe(32)
        return Visitor(None, csrf, self._browser_language(request), new_csrf_cookie=fresh)

    def csrf_ok(self, visitor: Visitor, submitted: object) -> bool:
        """The form's token is the visitor's (compared in constant time)."""
        return (isinstance(submitted, str) and not visitor.new_csrf_cookie
                and hmac.compare_digest(submitted.encode(), visitor.csrf.encode()))

    def set_cookies(self, response: web.StreamResponse, visitor: Visitor) -> None:
        if visitor.new_csrf_cookie:
            self._cookie(response, CSRF_COOKIE, visitor.csrf)

    # -- log in and out -------------------------------------------------------------------------------------------

    async def log_in(self, address: str, password: str, client: str, *, replacing: str | None = None) -> LogIn:
        """Check the password (throttled); a new session on success, ending ``replacing`` (the visitor's old one).

        Each attempt is counted as a failure *before* the password is checked and forgiven after a success, so
        a burst of tries sent at once cannot all slip through under a count read before any of them failed.
        """
        address = address.strip().lower()[:320]
        now = self.clock()
        http = self.config.http
        window = timedelta(minutes=http.login_lockout_minutes)
        keys = [f"address:{address}", f"client:{client}"]
        async with self.db.transaction() as store:
            by_address = await store.helpdesk.failures_since(keys[0], now - window)
            by_client = await store.helpdesk.failures_since(keys[1], now - window)
            locked = by_address >= http.login_failures or by_client >= http.login_failures * CLIENT_FACTOR
            claims = [] if locked else await store.helpdesk.add_failure(keys, now)
            user = await store.users.by_address(address) if address else None
            encoded = await store.verifications.password_hash(user.id) if user else None
        if locked or not may_log_in(user, encoded):
            await self.passwords.verify(await self._dummy(), password)  # the same work as a real check
            ok = False
        else:
            assert encoded is not None
            ok = await self.passwords.verify(encoded, password)
        if locked:
            log.warning("web.login_locked", client=client)
            return LogIn(LOCKED)
        if not ok or user is None:
            log.info("web.login_failed", client=client)
            return LogIn(REFUSED)
        token = secrets.token_urlsafe(32)
        async with self.db.transaction() as store:
            await store.helpdesk.forgive_failures(claims)
            await store.helpdesk.clear_failures(keys[0])
            if replacing is not None:
                await store.helpdesk.end_session(replacing)
            await store.helpdesk.forget_failures_before(now - window)
            await store.helpdesk.end_sessions_before(now - timedelta(hours=http.session_max_hours),
                                                     now - timedelta(hours=http.session_idle_hours))
            await store.helpdesk.add_session(token_hash(token), user.id, secrets.token_urlsafe(32), now)
        log.info("web.logged_in", user_id=user.id, client=client)
        return LogIn(LOGGED_IN, user, token)

    async def log_out(self, visitor: Visitor) -> None:
        if visitor.session is not None:
            async with self.db.transaction() as store:
                await store.helpdesk.end_session(visitor.session)
            log.info("web.logged_out", user_id=visitor.user.id if visitor.user else None)

    def start_session(self, response: web.StreamResponse, token: str) -> None:
        """The session cookie, replacing any earlier one (the session id changes at every log-in)."""
        self._cookie(response, SESSION_COOKIE, token)
        response.del_cookie(CSRF_COOKIE, path=self._path())

    def end_session(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path=self._path())

    # -- helpers --------------------------------------------------------------------------------------------------

    def client(self, request: web.Request) -> str:
        """The client's address: the peer, or behind a trusted proxy the last X-Forwarded-For entry."""
        if self.config.http.trust_forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            if forwarded:
                return forwarded[:64]
        return request.remote or ""

    def _cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, path=self._path(), httponly=True, samesite="Lax",
                            secure=self.config.http.secure)

    def _path(self) -> str:
        return urlsplit(self.config.http.base_url).path.rstrip("/") or "/"

    def _browser_language(self, request: web.Request) -> str:
        """For someone not logged in: the first of our languages the browser asks for, else the default."""
        for part in request.headers.get("Accept-Language", "")[:200].split(","):
            code = part.split(";")[0].strip().lower()[:2]
            if code in LANGUAGES:
                return code
        return self.config.mail.default_language

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.passwords.hash(secrets.token_urlsafe(16))
        return self._dummy_hash
