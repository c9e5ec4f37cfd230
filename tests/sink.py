"""A real aiosmtpd SMTP sink in the test's own event loop that catches what the daemon sends.

It can be told to refuse RCPT or DATA with a given reply (``451 …``,
``550 …``), to require AUTH, and it can be stopped and started again on the
same port to play a relay that goes down and comes back.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One mail as the sink accepted it: envelope and the bytes after DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes


class Sink:
    """Listen on 127.0.0.1 (port 0 picks a free one, kept across restarts)."""

    def __init__(self, port: int = 0, *, credentials: tuple[str, str] | None = None,
                 tls: ssl.SSLContext | None = None, implicit_tls: bool = False, smtputf8: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.credentials = credentials
        self.tls = tls  # offered with STARTTLS, or from the first byte with implicit_tls
        self.implicit_tls = implicit_tls
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531), as Postfix 3 does
        self.sessions_over_tls: list[bool] = []
        self.received: list[Received] = []
        self.logins: list[str] = []
        self.rcpt_reply: str | None = None  # e.g. "550 5.1.1 No such user"
        self.data_reply: str | None = None  # e.g. "451 4.3.0 Try again later"
        self.refuse: dict[str, str] = {}  # recipient address → RCPT reply, e.g. "550 5.1.1 No such user"
        self._server: asyncio.Server | None = None

    @property
    def relay(self) -> str:
        """``host:port`` for ``[outbound] relay``."""
        return f"{self.host}:{self.port}"

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self.host, port=self.port, family=socket.AF_INET, reuse_address=True,
            ssl=self.tls if self.implicit_tls else None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Sink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _protocol(self) -> SMTP:
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        with warnings.catch_warnings():
            # AUTH without TLS is what the test wants; aiosmtpd warns about it on every connection.
            warnings.simplefilter("ignore", UserWarning)
            if self.tls is not None and not self.implicit_tls:
                auth["tls_context"] = self.tls
            return SMTP(self, hostname="relay.example", ident="test sink", decode_data=False,
                        enable_SMTPUTF8=self.smtputf8, **auth)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if (login, password) != self.credentials:
            return AuthResult(success=False)
        self.logins.append(login)
        return AuthResult(success=True, auth_data=login)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        if address.lower() in self.refuse:
            return self.refuse[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        raw = envelope.original_content
        assert isinstance(raw, bytes) and envelope.mail_from is not None
        self.sessions_over_tls.append(self.implicit_tls or session.ssl is not None)
        self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), raw))
        return "250 OK queued"
