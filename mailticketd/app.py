"""The daemon: one event loop with the SMTP and HTTP listeners and the workers; signals stop it cleanly."""

from __future__ import annotations

import asyncio
import signal

import structlog

from mailticketd import __version__
from mailticketd.config import Config
from mailticketd.inbox.worker import InboxWorker
from mailticketd.mail.templates import Templates
from mailticketd.outbox.failures import failure_reporter
from mailticketd.outbox.mailer import Mailer
from mailticketd.outbox.transports import make_transport
from mailticketd.outbox.worker import DeliveryWorker
from mailticketd.pipeline.context import Services
from mailticketd.pipeline.order import Pipeline
from mailticketd.smtp.handler import InboundHandler
from mailticketd.smtp.server import bound_port, start_smtp_server
from mailticketd.storage import Database
from mailticketd.systemd import notify
from mailticketd.tickets.tokens import load_signer
from mailticketd.web import build_web_server

log = structlog.get_logger("mailticketd")


class Daemon:
    """Everything that runs: start it, serve, stop it; usable in-process by the tests."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pipeline = Pipeline()
        self.templates = Templates(config.mail.templates)
        self.templates.check()
        signer = load_signer(config.mail.token_secrets, config.storage.database.parent)
        self.services = Services(signer=signer, mailer=Mailer(config, self.templates, signer),
                                 templates=self.templates)
        self.db = Database(config.storage.database, busy_timeout=config.storage.busy_timeout)
        self.delivery = DeliveryWorker(self.db, config, make_transport(config.outbound))
        self.delivery.on_failed = failure_reporter(self.db, config, self.services.mailer, self.delivery.wake)
        self.worker = InboxWorker(self.db, config, self.pipeline, self.services, on_committed=self.delivery.wake)
        self.web = build_web_server(config, self.db, self.services.mailer, on_queued=self.delivery.wake)
        self._smtp: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def smtp_port(self) -> int:
        assert self._smtp is not None
        return bound_port(self._smtp)

    @property
    def http_port(self) -> int:
        return self.web.port

    async def start(self) -> None:
        await self.db.open()
        try:
            handler = InboundHandler(self.config, self.db, on_stored=self.worker.wake)
            self._smtp = await start_smtp_server(self.config, handler)
            await self.web.start()
        except BaseException:
            if self._smtp is not None:
                self._smtp.close()
                await self._smtp.wait_closed()
                self._smtp = None
            await self.db.close()
            raise
        self._tasks = [asyncio.create_task(self.worker.run(), name="inbox-worker"),
                       asyncio.create_task(self.delivery.run(), name="delivery-worker")]
        log.info("daemon.started", version=__version__, config=self.config.source,
                 smtp=f"{self.config.smtp.host}:{self.smtp_port}",
                 http=f"{self.config.http.host}:{self.http_port}", database=str(self.config.storage.database))

    async def stop(self) -> None:
        """Stop accepting, let the workers finish their current mail, close the database."""
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
            self._smtp = None
        await self.web.stop()
        self.worker.stop()
        self.delivery.stop()
        await asyncio.gather(*self._tasks)
        self._tasks = []
        await self.db.close()
        log.info("daemon.stopped")

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT."""
    daemon = Daemon(config)
    await daemon.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    notify("READY=1")
    try:
        await stopping.wait()
        log.info("daemon.stopping")
        notify("STOPPING=1")
    finally:
        await daemon.stop()
