"""Verification links: a random token per link, stored only as its sha256, valid for a while, usable once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from mailticketd.clock import iso
from mailticketd.storage import Store


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


async def issue_verification(store: Store, user_id: int, *, hours: int, now: datetime) -> str:
    """Make a token for ``user_id`` (256 random bits) and store its hash; returns the token for the link."""
    token = secrets.token_urlsafe(32)
    await store.verifications.add(user_id, token_hash(token), iso(now + timedelta(hours=hours)))
    return token


def verification_url(base_url: str, token: str) -> str:
    return f"{base_url}/verify/{token}"


def login_url(base_url: str) -> str:
    """The helpdesk's log-in page, named in every mail that talks about the password."""
    return f"{base_url}/login"
