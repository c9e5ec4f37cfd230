"""SQL for the audit log: who changed what in the directory, when, from which state to which."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailticketd.clock import iso
from mailticketd.storage.connection import Connection


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str  # e.g. user.deactivate, primary.set
    subject: str  # the organisation's name, the user's address or the VM's name
    before: dict[str, Any] | None  # None: the subject did not exist before
    after: dict[str, Any] | None  # None: the subject is gone
    request: dict[str, Any] | None = None  # a change made by mail: the ticket, its requester, an override


def _state(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text is not None else None


def _text(state: dict[str, Any] | None) -> str | None:
    return json.dumps(state, ensure_ascii=False, sort_keys=True) if state is not None else None


class AuditRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def record(self, *, at: datetime, actor: str, action: str, subject: str,
                     before: dict[str, Any] | None, after: dict[str, Any] | None,
                     request: dict[str, Any] | None = None) -> int:
        """Append one entry; it commits (or not) with the change it describes."""
        cursor = await self.conn.execute(
            "INSERT INTO audit_log (at, actor, action, subject, before_state, after_state, request)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (iso(at), actor, action, subject, _text(before), _text(after), _text(request)),
        )
        return int((await cursor.fetchone())[0])

    async def list(self, subject: str | None = None) -> list[AuditEntry]:
        """Entries in the order they were written, optionally only those about ``subject``."""
        where, params = (f"WHERE {self.conn.dialect.equals_nocase('subject')}", (subject,)) if subject else ("", ())
        async with self.conn.execute(
            "SELECT id, at, actor, action, subject, before_state, after_state, request"
            f" FROM audit_log {where} ORDER BY id",
            params,
        ) as cursor:
            return [AuditEntry(id=values[0], at=values[1], actor=values[2], action=values[3], subject=values[4],
                               before=_state(values[5]), after=_state(values[6]), request=_state(values[7]))
                    for values in await cursor.fetchall()]
