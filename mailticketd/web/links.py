"""What a verification link does: look it up, set the password through it, or send a fresh one.

A link proves only that its holder reads mail at the address: using it
stores a password hash and ``verified_at``, turns an *unverified* user
*active*, and uses up every open link of that user.  Role, authorisation
and organisation stay as they are; only staff change those.

Looking a link up never changes anything (link scanners fetch every GET);
the two actions run from POSTs.  The password is hashed before the write
transaction, and the link's state is checked again inside it, so two
submissions of the same link cannot both succeed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.directory.models import User
from mailticketd.directory.passwords import Passwords
from mailticketd.directory.verification import issue_verification, token_hash, verification_url
from mailticketd.outbox.mailer import Letter, Mailer
from mailticketd.storage import Database
from mailticketd.storage.verification import VerificationLink

# What became of a link or a request made through it.
NOT_FOUND = "not-found"
VALID = "valid"
EXPIRED = "expired"
USED = "used"
VERIFIED = "verified"
SENT = "sent"
LIMITED = "limited"

# New links one user may ask for through the pages within RENEWAL_WINDOW.
RENEWALS_PER_WINDOW = 3
RENEWAL_WINDOW = timedelta(hours=1)

# secrets.token_urlsafe(32) gives 43 characters; anything far from that is no token of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")


@dataclass(frozen=True)
class Outcome:
    """The state reached, and the user the link belongs to (None when the link is unknown)."""

    state: str
    user: User | None = None


def link_state(link: VerificationLink, now: datetime) -> str:
    """``USED`` before ``EXPIRED``: a used link stays used whatever its age."""
    if link.used_at is not None:
        return USED
    if link.expired(now):
        return EXPIRED
    return VALID


class VerificationDesk:
    """Serves the three things a link can do, over one database and the outbox."""

    def __init__(self, config: Config, db: Database, mailer: Mailer, passwords: Passwords,
                 *, clock: Callable[[], datetime] = utc_now, on_queued: Callable[[], None] | None = None) -> None:
        self.config = config
        self.db = db
        self.mailer = mailer
        self.passwords = passwords
        self.clock = clock
        self.on_queued = on_queued

    def language(self, user: User | None) -> str:
        """The user's language, else the configured default."""
        return self.config.mail.language_for(user.language if user is not None else None)

    async def look_up(self, token: str) -> Outcome:
        """The link's state, changing nothing."""
        if not _TOKEN.fullmatch(token):
            return Outcome(NOT_FOUND)
        async with self.db.read() as store:
            link = await store.verifications.by_sha256(token_hash(token))
        return Outcome(link_state(link, self.clock()), link.user) if link else Outcome(NOT_FOUND)

    async def set_password(self, token: str, password: str) -> Outcome:
        """Verify the address and store the password's hash; ``VERIFIED``, or why not."""
        before = await self.look_up(token)
        if before.state != VALID:
            return before
        encoded = await self.passwords.hash(password)
        async with self.db.transaction() as store:
            link = await store.verifications.by_sha256(token_hash(token))
            now = self.clock()
            if link is None:
                return Outcome(NOT_FOUND)
            state = link_state(link, now)
            if state != VALID:
                return Outcome(state, link.user)
            await store.verifications.set_password(link.user.id, encoded, now)
            await store.verifications.use_all(link.user.id, now)
        return Outcome(VERIFIED, link.user)

    async def renew(self, token: str) -> Outcome:
        """Mail a fresh link for an expired or used one: ``SENT``, ``LIMITED``, or the state that forbids it."""
        if not _TOKEN.fullmatch(token):
            return Outcome(NOT_FOUND)
        hours = self.config.http.verification_hours
        async with self.db.transaction() as store:
            link = await store.verifications.by_sha256(token_hash(token))
            now = self.clock()
            if link is None:
                return Outcome(NOT_FOUND)
            user = link.user
            state = link_state(link, now)
            if state == VALID:
                return Outcome(VALID, user)
            if user.status == "inactive":
                return Outcome(state, user)  # someone who left gets no new link, and the page says nothing of why
            if await store.outbox.count_recent(user.address, ("verify",), now - RENEWAL_WINDOW) >= RENEWALS_PER_WINDOW:
                return Outcome(LIMITED, user)
            fresh = await issue_verification(store, user.id, hours=hours, now=now)
            context = {"recipient": {"address": user.address, "name": user.name},
                       "verification_url": verification_url(self.config.http.base_url, fresh),
                       "verification_hours": hours}
            await self.mailer.send(store, Letter("verify", "verify", user.address, context, self.language(user),
                                                 user.name), now=now)
        if self.on_queued is not None:
            self.on_queued()
        return Outcome(SENT, user)
