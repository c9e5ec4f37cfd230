"""The ticket values as the storage layer returns them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    id: int
    number: int
    subject: str
    status: str  # new | open | pending | closed
    organisation_id: int | None
    requester_id: int | None
    created_at: str
    updated_at: str
    closed_at: str | None = None
    assignee: str | None = None
    follows_ticket_id: int | None = None
    thread_index: str | None = None
