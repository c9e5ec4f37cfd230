"""What differs in the repositories' SQL between SQLite and PostgreSQL, asked of the connection.

Most SQL is written once for both (``RETURNING id``, ``ON CONFLICT DO NOTHING``, ``CAST``); only what
cannot be is here, next to the backend's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str  # sqlite | postgresql
    # Several daemons may share the database: queue rows are claimed (with a lease) before they are worked on.
    shared: bool
    # Case-insensitive LIKE over ASCII, as SQLite's LIKE is.
    like: str
    # "a is not b" where NULL equals NULL.
    is_distinct: str
    # Appended to a SELECT that claims queue rows: other daemons skip what this one locked.
    skip_locked: str
    # The sequence ticket numbers come from (several daemons open tickets), or None: one more than the highest.
    ticket_sequence: str | None
    # Big values (a mail, an attachment) are written by incremental blob I/O into a zeroblob (SQLite) rather
    # than bound whole to a statement, which SQLite would copy twice.
    incremental_blobs: bool = False

    def equals_nocase(self, column: str) -> str:
        """``column`` equals a parameter, ignoring the case of ASCII letters (SQLite's NOCASE)."""
        if self.name == "sqlite":
            return f"{column} = ? COLLATE NOCASE"
        return f"lower({column}) = lower(?)"


SQLITE = Dialect(name="sqlite", shared=False, like="LIKE", is_distinct="IS NOT", skip_locked="",
                 ticket_sequence=None, incremental_blobs=True)
POSTGRESQL = Dialect(name="postgresql", shared=True, like="ILIKE", is_distinct="IS DISTINCT FROM",
                     skip_locked=" FOR UPDATE SKIP LOCKED", ticket_sequence="ticket_numbers")
