"""Keep slow or numerous HTTP clients from taking the daemon's file descriptors (and SMTP with them).

Every HTTP connection must send a complete request header within
``[http] header_timeout`` seconds of its start or of its previous request;
a connection that dawdles is closed.  At most ``[http] max_connections`` are
open at once, and fewer when the process's descriptor limit would otherwise
leave less than SMTP's ``max_connections`` plus ``[http] reserve_descriptors``
free: a connection past the cap gets a bare ``503`` and is closed at once.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mailticketd.config import Config

log = structlog.get_logger("mailticketd.web")

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 5\r\n\r\n"


def raise_descriptor_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard one (systemd's ``LimitNOFILE``); returns both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a container may refuse; the soft limit stays
            pass
    return soft, hard


def connection_cap(config: Config) -> int:
    """How many HTTP connections may be open: the configured cap, or fewer if descriptors are short."""
    soft, _ = raise_descriptor_limit()
    in_use = _open_descriptors()
    spare = soft - in_use - config.smtp.max_connections - config.http.reserve_descriptors
    cap = max(1, min(config.http.max_connections, spare))
    if cap < config.http.max_connections:
        log.warning("http.connections_capped", cap=cap, configured=config.http.max_connections,
                    descriptor_limit=soft, in_use=in_use, reserved_for_smtp=config.smtp.max_connections,
                    reserve_descriptors=config.http.reserve_descriptors)
    return cap


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


class LimitedSite(web.TCPSite):
    """aiohttp's ``TCPSite`` whose connections are counted, capped and given a header deadline."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, cap: int, header_timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.cap = cap
        self.header_timeout = header_timeout
        self.open: set[_Guarded] = set()
        self.refused = 0

    @classmethod
    def for_config(cls, runner: web.BaseRunner, config: Config) -> LimitedSite:
        return cls(runner, config.http.host, config.http.port, cap=connection_cap(config),
                   header_timeout=config.http.header_timeout)

    async def start(self) -> None:
        # TCPSite.start listens with the runner's protocol factory: hand it ours for the call.
        original = self._runner.server
        assert original is not None

        def guarded() -> asyncio.Protocol:
            if len(self.open) >= self.cap:
                self.refused += 1
                return _Busy(self)
            return _Guarded(original(), self)

        self._runner._server = guarded  # type: ignore[assignment]
        try:
            await super().start()
        finally:
            self._runner._server = original


class _Busy(asyncio.Protocol):
    """A connection past the cap: a bare 503 and goodbye, before aiohttp spends anything on it."""

    def __init__(self, site: LimitedSite) -> None:
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()
        if self.site.refused in (1, 10, 100, 1000) or self.site.refused % 10000 == 0:
            log.warning("http.too_many_connections", cap=self.site.cap, refused_so_far=self.site.refused)


class _Guarded(asyncio.Protocol):
    """aiohttp's request handler behind a deadline for each request header."""

    def __init__(self, inner: RequestHandler, site: LimitedSite) -> None:
        self.inner = inner
        self.site = site
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.site.open.add(self)
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)
        if self.inner._request_count != self._requests:  # a header was parsed: the deadline starts anew
            self._requests = self.inner._request_count
            self._arm()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[func-returns-value]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, error: Exception | None) -> None:
        self.site.open.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self.inner.connection_lost(error)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.site.header_timeout, self._expired)

    def _expired(self) -> None:
        # A request being answered is not a slow header; look again later.
        if self.inner._current_request is not None:
            self._arm()
            return
        if self.transport is not None:
            self.transport.close()
