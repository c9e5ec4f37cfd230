"""Who may hold an SMTP session: connection limits, idle timeouts that shrink under load, and the drain.

An attacker with idle connections must not lock others out:

- one client address holds at most ``max_connections_per_client`` sessions;
- once three quarters of ``max_connections`` are open, the idle timeout
  drops from ``idle_timeout`` to ``busy_idle_timeout``;
- when all are open, a new client takes the place of the session that has
  been idle longest, if it has been idle for ``busy_idle_timeout``;
- a session lasts at most ``max_session_time``, and it may send at most
  ``max_idle_commands`` NOOP, RSET, HELP, VRFY or EXPN between two mails
  (``server.py``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Protocol

from mailticketd.config import SmtpConfig
from mailticketd.smtp import replies

# The share of max_connections from which idle sessions get the short timeout.
BUSY_SHARE = 0.75


class Client(Protocol):
    """What the limits need to know of one session."""

    client: str  # the peer's address, without the port
    idle_since: float  # loop time of the last command or line of DATA

    def close_with(self, reply: str) -> None:
        """Send ``reply`` and close the connection."""


class Sessions:
    """The open SMTP sessions: admission, idle eviction, and the drain at shutdown."""

    def __init__(self) -> None:
        self.open: set[Client] = set()
        self.per_client: Counter[str] = Counter()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self, session: Client, limits: SmtpConfig, now: float) -> tuple[str, str] | None:
        """Register ``session``, or return the reply and the reason that refuse it."""
        if self.draining:
            return replies.SHUTTING_DOWN, "shutting-down"
        if self.per_client[session.client] >= limits.max_connections_per_client:
            return replies.TOO_MANY_FROM_CLIENT, "too-many-from-client"
        if len(self.open) >= limits.max_connections and not self._make_room(now, limits.busy_idle_timeout):
            return replies.TOO_MANY_CONNECTIONS, "too-many-connections"
        self.open.add(session)
        self.per_client[session.client] += 1
        self._idle.clear()
        return None

    def discard(self, session: Client) -> None:
        if session not in self.open:
            return
        self.open.discard(session)
        self.per_client[session.client] -= 1
        if self.per_client[session.client] <= 0:
            del self.per_client[session.client]
        if not self.open:
            self._idle.set()

    def idle_timeout(self, limits: SmtpConfig) -> float:
        """The idle timeout for a session now: shorter once the sessions near their limit."""
        if len(self.open) >= BUSY_SHARE * limits.max_connections:
            return min(limits.busy_idle_timeout, limits.idle_timeout)
        return limits.idle_timeout

    def _make_room(self, now: float, idle_for: float) -> bool:
        """Close the session idle longest if it has idled ``idle_for`` seconds; False if none has."""
        oldest = min(self.open, key=lambda session: session.idle_since, default=None)
        if oldest is None or now - oldest.idle_since < idle_for:
            return False
        self.discard(oldest)
        oldest.close_with(replies.IDLE_TIMEOUT)
        return True

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for open sessions to end; close the rest; returns how many were cut."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return 0
        except TimeoutError:
            left = list(self.open)
            for session in left:
                session.close_with(replies.SHUTTING_DOWN)
            return len(left)
