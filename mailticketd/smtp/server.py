"""Run the SMTP listener inside the daemon's own event loop, with enhanced status codes and a connection limit."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP

from mailticketd import __version__
from mailticketd.config import Config
from mailticketd.smtp import replies
from mailticketd.smtp.handler import InboundHandler

log = structlog.get_logger("mailticketd.smtp")


class _Protocol(SMTP):
    """aiosmtpd's SMTP with our limits and replies in place of its bare ones."""

    def __init__(self, handler: InboundHandler, config: Config, counter: dict[str, int]) -> None:
        # Read by SMTP.__init__ for its stream limit: real clients send longer lines than RFC 5321 allows.
        self.line_length_limit = config.smtp.max_line_length
        super().__init__(
            handler, hostname=config.smtp.hostname, ident=f"mailticketd {__version__}",
            data_size_limit=config.smtp.max_message_size, decode_data=False,
        )
        self._config = config
        self._handler = handler
        self._counter = counter
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counter["active"] >= self._config.smtp.max_connections:
            self._refused = True
            self._handler.refused(421, "too-many-connections")
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(replies.TOO_MANY_CONNECTIONS.encode() + b"\r\n")
            transport.close()
            return
        self._counter["active"] += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._counter["active"] -= 1
        super().connection_lost(error)

    async def push(self, status: str | bytes) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        if text.startswith("552 Error"):
            self._handler.refused(552, "too-big", peer=str(self.session.peer if self.session else ""))
            text = replies.TOO_BIG.format(limit=self._config.smtp.max_message_size)
        elif text.startswith("500 Line too long"):
            self._handler.refused(500, "line-too-long")
            text = replies.LINE_TOO_LONG.format(limit=self._config.smtp.max_line_length)
        await super().push(text)


async def start_smtp_server(config: Config, handler: InboundHandler) -> asyncio.Server:
    """Listen on ``[smtp] listen``; close with ``close()`` and ``wait_closed()``."""
    loop = asyncio.get_running_loop()
    counter = {"active": 0}
    server = await loop.create_server(
        lambda: _Protocol(handler, config, counter), host=config.smtp.host, port=config.smtp.port,
        family=socket.AF_UNSPEC, reuse_address=True,
    )
    return server


def bound_port(server: asyncio.Server) -> int:
    """The port the server listens on (useful with port 0)."""
    sockets: Any = server.sockets
    return int(sockets[0].getsockname()[1])
