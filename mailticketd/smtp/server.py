"""Run the SMTP listener inside the daemon's own event loop: enhanced status codes, STARTTLS, limits, a drain."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import syntax

from mailticketd import __version__
from mailticketd.smtp import replies
from mailticketd.smtp.handler import InboundHandler
from mailticketd.smtp.limits import Sessions
from mailticketd.smtp.lines import DataLines
from mailticketd.smtp.spool import SpoolingData
from mailticketd.smtp.tls import server_context

log = structlog.get_logger("mailticketd.smtp")

# ``<local@domain>`` with a dot-atom local part and a host name, as nearly every client sends it: read here
# directly, where aiosmtpd runs the e-mail header parser (about 0.1 ms a command on the event loop). After the
# ``>`` that parser also takes blanks and comments; a comment, like everything else, goes the parser's way.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*+(?!\()")


class _Protocol(SpoolingData):
    """aiosmtpd's SMTP with our limits and replies in place of its bare ones."""

    def __init__(self, handler: InboundHandler, sessions: Sessions) -> None:
        config = handler.config  # read per connection: a reload applies to new sessions
        # Read by SMTP.__init__ for its stream limit: real clients send longer lines than RFC 5321 allows.
        self.line_length_limit = config.smtp.max_line_length
        self.spool_threshold = config.smtp.spool_threshold
        self.spool_directory = config.smtp.spool_directory
        super().__init__(
            handler, hostname=config.smtp.hostname, ident=f"mailticketd {__version__}",
            data_size_limit=config.smtp.max_message_size, decode_data=False, enable_SMTPUTF8=True,
            tls_context=server_context(config.smtp, config.source), require_starttls=config.smtp.require_tls,
            timeout=config.smtp.idle_timeout,
        )
        self._limits = config.smtp
        self._handler = handler
        self._sessions = sessions
        self._refused = False
        self._session_timer: asyncio.TimerHandle | None = None
        self._idle_commands = 0
        self.client = ""
        self.idle_since = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is not None:  # the same session again, now over TLS
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
        refusal = self._sessions.admit(self, self._limits, self.loop.time())
        if refusal is not None:
            self._refused = True
            reply, reason = refusal
            self._handler.refused(int(reply[:3]), reason, peer=self.client)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(reply.encode() + b"\r\n")
            transport.close()
            return
        self._session_timer = self.loop.call_later(self._limits.max_session_time, self._session_too_long)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._session_timer is not None:
            self._session_timer.cancel()
        self._sessions.discard(self)
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_ADDRESS.match(arg)
        if match is None:
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and address.rindex("@") > self.local_part_limit:
            return None, None
        return address, arg[match.end():]

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
        elif text.startswith("530 Must issue a STARTTLS"):
            self._handler.refused(530, "starttls-required", peer=self.client)
            text = replies.MUST_STARTTLS
        else:
            text = replies.enhanced(text)
        await super().push(text)

    def close_with(self, reply: str) -> None:
        """Send ``reply`` (a 421) and close; the session ends in ``connection_lost``."""
        if self.transport is not None and not self.transport.is_closing():
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.write(reply.encode() + b"\r\n")
            self.transport.close()

    # -- timeouts and idle commands ------------------------------------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        self.idle_since = self.loop.time()
        super()._reset_timeout(duration or self._sessions.idle_timeout(self._limits))

    def _timeout_cb(self) -> None:
        self._handler.refused(421, "idle-timeout", peer=self.client)
        self.close_with(replies.IDLE_TIMEOUT)

    def _session_too_long(self) -> None:
        self._handler.refused(421, "session-too-long", peer=self.client)
        self.close_with(replies.SESSION_TOO_LONG)

    def data_progress(self) -> None:
        # A line of DATA is activity: a big mail on a slow link is not an idle session.
        if self.loop.time() - self.idle_since > 1.0:
            self._reset_timeout()

    def data_finished(self) -> None:
        self._idle_commands = 0

    async def _idle_command(self) -> bool:
        """Count one command that moves no mail forward; False (and the session closed) past the limit."""
        self._idle_commands += 1
        if self._idle_commands <= self._limits.max_idle_commands:
            return True
        self._handler.refused(421, "too-many-idle-commands", peer=self.client)
        self.close_with(replies.TOO_MANY_IDLE_COMMANDS)
        return False

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        if await self._idle_command():
            await super().smtp_NOOP(arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        if await self._idle_command():
            await super().smtp_RSET(arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        if await self._idle_command():
            await super().smtp_HELP(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        if await self._idle_command():
            await super().smtp_VRFY(arg)

    async def smtp_EXPN(self, arg: str) -> None:
        if await self._idle_command():
            await super().smtp_EXPN(arg)


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
    server_context(config.smtp, config.source)  # a certificate that cannot be used stops the start
    server = await loop.create_server(
        lambda: _Protocol(handler, sessions), host=config.smtp.host, port=config.smtp.port,
        family=socket.AF_UNSPEC, reuse_address=True,
    )
    return SmtpListener(server, sessions)
