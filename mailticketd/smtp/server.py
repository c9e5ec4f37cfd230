"""Run the SMTP listener inside the daemon's own event loop: enhanced status codes, a connection limit, a drain."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, syntax

from mailticketd import __version__
from mailticketd.smtp import replies
from mailticketd.smtp.handler import InboundHandler
from mailticketd.smtp.lines import DataLines

log = structlog.get_logger("mailticketd.smtp")


class _Protocol(SMTP):
    """aiosmtpd's SMTP with our limits and replies in place of its bare ones."""

    def __init__(self, handler: InboundHandler, sessions: Sessions) -> None:
        config = handler.config  # read per connection: a reload applies to new sessions
        # Read by SMTP.__init__ for its stream limit: real clients send longer lines than RFC 5321 allows.
        self.line_length_limit = config.smtp.max_line_length
        super().__init__(
            handler, hostname=config.smtp.hostname, ident=f"mailticketd {__version__}",
            data_size_limit=config.smtp.max_message_size, decode_data=False,
        )
        self._limits = config.smtp
        self._handler = handler
        self._sessions = sessions
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._sessions.open) >= self._limits.max_connections or self._sessions.draining:
            self._refused = True
            self._handler.refused(421, "too-many-connections" if not self._sessions.draining else "shutting-down")
            assert isinstance(transport, asyncio.WriteTransport)
            reply = replies.TOO_MANY_CONNECTIONS if not self._sessions.draining else replies.SHUTTING_DOWN
            transport.write(reply.encode() + b"\r\n")
            transport.close()
            return
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._sessions.discard(self)
        super().connection_lost(error)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # Bare LF ends a line and over-long lines are wrapped, never refused (see smtp/lines.py).
        reader = self._reader
        lines = DataLines(reader, self._limits.max_line_length)
        self._reader = lines  # type: ignore[assignment]
        try:
            await super().smtp_DATA(arg)
        finally:
            self._reader = reader
        if lines.breaks or lines.bare_lf:
            log.info("smtp.data_normalised", long_line_breaks=lines.breaks, bare_lf_lines=lines.bare_lf)

    async def push(self, status: str | bytes) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        if text.startswith("552 Error"):
            self._handler.refused(552, "too-big", peer=str(self.session.peer if self.session else ""))
            text = replies.TOO_BIG.format(limit=self._limits.max_message_size)
        elif text.startswith("500 Line too long"):
            self._handler.refused(500, "line-too-long")
            text = replies.LINE_TOO_LONG.format(limit=self._limits.max_line_length)
        await super().push(text)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Sessions:
    """The open SMTP sessions, so that a shutdown can let them finish."""

    def __init__(self) -> None:
        self.open: set[_Protocol] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, protocol: _Protocol) -> None:
        self.open.add(protocol)
        self._idle.clear()

    def discard(self, protocol: _Protocol) -> None:
        self.open.discard(protocol)
        if not self.open:
            self._idle.set()

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for open sessions to end; close the rest; returns how many were cut."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return 0
        except TimeoutError:
            left = list(self.open)
            for protocol in left:
                protocol.abort()
            return len(left)


class SmtpListener:
    """The listening socket and its sessions."""

    def __init__(self, server: asyncio.Server, sessions: Sessions) -> None:
        self.server = server
        self.sessions = sessions

    @property
    def port(self) -> int:
        sockets: Any = self.server.sockets
        return int(sockets[0].getsockname()[1])

    async def close(self, drain_timeout: float) -> None:
        """Stop accepting connections, let open sessions finish (up to ``drain_timeout``), then close."""
        self.server.close()
        cut = await self.sessions.drain(drain_timeout)
        if cut:
            log.warning("smtp.sessions_cut", count=cut, after_seconds=drain_timeout)
        await self.server.wait_closed()


async def start_smtp_server(handler: InboundHandler) -> SmtpListener:
    """Listen on ``[smtp] listen``."""
    loop = asyncio.get_running_loop()
    sessions = Sessions()
    config = handler.config
    server = await loop.create_server(
        lambda: _Protocol(handler, sessions), host=config.smtp.host, port=config.smtp.port,
        family=socket.AF_UNSPEC, reuse_address=True,
    )
    return SmtpListener(server, sessions)
