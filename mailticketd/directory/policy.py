"""Answer the helpdesk's policy questions: who may act on a ticket, and how to label an author."""

from __future__ import annotations

from mailticketd.directory.models import User
from mailticketd.tickets.models import Ticket

OPERATOR = "operator"
INACTIVE = "inactive"
UNVERIFIED = "unverified"
OTHER_ORGANISATION = "other-organisation"
AUTHORISED = "authorised"
MEMBER = "user"
UNKNOWN = "unknown"


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


def author_status(user: User | None, organisation_id: int | None, *, operator: bool) -> str:
    """The label operators see next to an author: the most important fact first."""
    if operator:
        return OPERATOR
    if user is None:
        return UNKNOWN
    if user.status == "inactive":
        return INACTIVE
    if user.status == "unverified" and user.organisation_id is None:
        return UNVERIFIED
    if organisation_id is not None and user.organisation_id != organisation_id:
        return OTHER_ORGANISATION
    if user.organisation_id is None:
        return UNVERIFIED
    if user.authorised:
        return AUTHORISED
    return MEMBER
