"""Answer the helpdesk's policy questions: who may act on a ticket, who is authorised, how to label an author."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from mailticketd.directory.models import User
from mailticketd.tickets.models import Ticket

OPERATOR = "operator"
INACTIVE = "inactive"
UNVERIFIED = "unverified"
CONFIRMED = "confirmed"  # proved the address through the link, but belongs to no organisation
OTHER_ORGANISATION = "other-organisation"
AUTHORISED = "authorised"
MEMBER = "user"
UNKNOWN = "unknown"

# A temporary authorisation ending within this time is shown to staff as about to expire.
EXPIRY_WARNING = timedelta(days=7)


def may_act_on(user: User | None, ticket: Ticket, participant_ids: frozenset[int], *, operator: bool) -> bool:
    """True if this author may add to ``ticket``: an operator, a participant, or a manager of its organisation.

    An inactive user has left the organisation and acts on nothing; ``operator``
    is only true when the caller has proof, never for a bare ``From``.
    """
    if operator:
        return True
    if user is None or user.status == "inactive":
        return False
    if user.id in participant_ids:
        return True
    return user.is_manager and ticket.organisation_id is not None and user.organisation_id == ticket.organisation_id


def is_authorised(user: User, now: datetime) -> bool:
    """True for an authorised contact at ``now``: not inactive, and a temporary authorisation not yet ended.

    A temporary authorisation holds through its ``authorised_until`` day (UTC)
    and ends by itself after it; nobody has to revoke it.
    """
    if not user.authorised or user.status == "inactive":
        return False
    return user.authorised_until is None or _today(now) <= date.fromisoformat(user.authorised_until)


def expires_soon(user: User, now: datetime) -> bool:
    """A temporary authorisation that still holds but ends within ``EXPIRY_WARNING``."""
    if not user.is_temporary or not is_authorised(user, now):
        return False
    assert user.authorised_until is not None
    return date.fromisoformat(user.authorised_until) < _today(now + EXPIRY_WARNING)


def has_expired(user: User, now: datetime) -> bool:
    """A temporary authorisation whose day has passed."""
    return user.is_temporary and user.status != "inactive" and not is_authorised(user, now)


def author_status(user: User | None, organisation_id: int | None, *, operator: bool, now: datetime) -> str:
    """The label operators see next to an author: the most important fact first."""
    if operator:
        return OPERATOR
    if user is None:
        return UNKNOWN
    if user.status == "inactive":
        return INACTIVE
    if user.organisation_id is None:
        return standing(user, now)
    if organisation_id is not None and user.organisation_id != organisation_id:
        return OTHER_ORGANISATION
    return standing(user, now)


def standing(user: User, now: datetime) -> str:
    """A person's standing on their own, as the CLI ``users`` and the operator notices name it.

    Someone in no organisation is ``unverified`` until they prove the address
    through a link and ``confirmed`` after: the link proves the address, it
    makes nobody a registered user of an organisation.
    """
    if user.status == "inactive":
        return INACTIVE
    if user.organisation_id is None:
        return CONFIRMED if user.verified_at is not None and user.status == "active" else UNVERIFIED
    if is_authorised(user, now):
        return AUTHORISED
    return MEMBER


def _today(now: datetime) -> date:
    return now.astimezone(timezone.utc).date()
