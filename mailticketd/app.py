"""The daemon: one event loop with the SMTP and HTTP listeners and the workers; signals stop or reload it."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from mailticketd import __version__
from mailticketd.clock import utc_now
from mailticketd.config import Config, load_config
from mailticketd.daemon_lock import DatabaseLock
from mailticketd.health import health_report
from mailticketd.heartbeat import Heartbeat
from mailticketd.inbox.worker import InboxWorker
from mailticketd.metrics import Metrics
from mailticketd.outbox.failures import failure_reporter
from mailticketd.outbox.mailer import Mailer
from mailticketd.outbox.transports import make_transport
from mailticketd.outbox.worker import DeliveryWorker
from mailticketd.pipeline.context import Services
from mailticketd.pipeline.order import Pipeline
from mailticketd.services import check_start_up, signer_for
from mailticketd.smtp.handler import InboundHandler
from mailticketd.smtp.server import SmtpListener, start_smtp_server
from mailticketd.storage import database_for
from mailticketd.logs import set_level
from mailticketd.systemd import NotifyError, notify
from mailticketd.web import build_web_server
from mailticketd.web.operations import Operations
from mailticketd.web.pages import Pages

log = structlog.get_logger("mailticketd")

# Settings a reload cannot change: they are bound to sockets and files that stay open.
_NEEDS_RESTART = (("smtp", "host"), ("smtp", "port"), ("http", "host"), ("http", "port"), ("http", "base_url"),
                  ("storage", "database"), ("log", "format"))


@dataclass(frozen=True)
class _Parts:
    """What a configuration makes, checked before the daemon uses it (at start and at every reload)."""

    pipeline: Pipeline
    services: Services
    pages: Pages

    @classmethod
    def build(cls, config: Config) -> _Parts:
        templates, pages, pipeline = check_start_up(config)
        signer = signer_for(config)
        return cls(pipeline, Services(signer=signer, mailer=Mailer(config, templates, signer)), pages)


class Daemon:
    """Everything that runs: start it, serve, reload, stop it; usable in-process by the tests."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        parts = _Parts.build(config)
        self.pipeline, self.services = parts.pipeline, parts.services
        self.db = database_for(config.storage)
        # One daemon per SQLite file; PostgreSQL is made for several.
        self.lock = None if config.storage.shared else DatabaseLock(config.storage.database)
        self.delivery = DeliveryWorker(self.db, config, make_transport(config.outbound), metrics=self.metrics)
        self.delivery.on_failed = failure_reporter(self.db, config, self.services.mailer, self.delivery.wake)
        self.worker = InboxWorker(self.db, config, self.pipeline, self.services, on_committed=self.delivery.wake,
                                  metrics=self.metrics)
        self.handler = InboundHandler(config, self.db, on_stored=self.worker.wake, metrics=self.metrics)
        self.web = build_web_server(config, self.db, self.services.mailer, parts.pages, on_queued=self.delivery.wake,
                                    on_stored=self.worker.wake)
        self.web.operations = Operations(self.health, self.metrics.render)
        self.heartbeat = Heartbeat(self.db)  # the daemons table: `mailticketd status` lists every daemon
        self._smtp: SmtpListener | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def smtp_port(self) -> int:
        assert self._smtp is not None
        return self._smtp.port

    @property
    def http_port(self) -> int:
        return self.web.port

    async def health(self) -> dict[str, Any]:
        stopped = self.delivery.stopped
        return await health_report(self.db, utc_now(), self.config.health.stuck_after, self.metrics,
                                   delivery_stopped=stopped.report() if stopped else None)

    async def start(self) -> None:
        """Take the database's lock, open it, start the listeners; on any failure undo all of it and raise."""
        if self.lock is not None:
            self.lock.acquire()  # before the first write: a second daemon refuses here (AlreadyRunning)
        try:
            await self.db.open()
            await self.db.intake.connect()  # before the listeners: a client cannot take its descriptors
            self._smtp = await start_smtp_server(self.handler)
            await self.web.start()
            await self.heartbeat.start()
        except BaseException:
            if self._smtp is not None:
                await self._smtp.close(0)
                self._smtp = None
            await self.web.stop()
            await self.db.close()
            if self.lock is not None:
                self.lock.release()
            raise
        self._tasks = [asyncio.create_task(self.worker.run(), name="inbox-worker"),
                       asyncio.create_task(self.delivery.run(), name="delivery-worker")]
        log.info("daemon.started", version=__version__, config=self.config.source,
                 smtp=f"{self.config.smtp.host}:{self.smtp_port}",
                 http=f"{self.config.http.host}:{self.http_port}", database=self.db.describe)

    async def stop(self) -> None:
        """Stop accepting, let open SMTP sessions and the workers finish, close the database."""
        if self._smtp is not None:
            await self._smtp.close(self.config.smtp.drain_timeout)
            self._smtp = None
        await self.web.stop()
        self.worker.stop()
        self.delivery.stop()
        await asyncio.gather(*self._tasks)
        self._tasks = []
        await self.heartbeat.stop()
        await self.db.close()
        if self.lock is not None:
            self.lock.release()
        log.info("daemon.stopped")

    def reload(self, config: Config) -> list[str]:
        """Use ``config`` and re-read the templates; raises (and changes nothing) when they are not usable.

        Returns the changed settings that only a restart applies.
        """
        parts = _Parts.build(config)
        restart = [f"[{section}] {key}" for section, key in _NEEDS_RESTART
                   if getattr(getattr(config, section), key) != getattr(getattr(self.config, section), key)]
        self.config = config
        self.pipeline, self.services = parts.pipeline, parts.services
        self.handler.config = config
        self.worker.config, self.worker.pipeline, self.worker.services = config, parts.pipeline, parts.services
        self.delivery.config, self.delivery.transport = config, make_transport(config.outbound)
        self.delivery.on_failed = failure_reporter(self.db, config, parts.services.mailer, self.delivery.wake)
        self.web.reload(config, parts.pages, parts.services.mailer)
        return restart

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(config: Config, config_file: Path | None = None) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads ``config_file`` and the templates."""
    daemon = Daemon(config)
    # Before the listeners open: a SIGTERM that comes as soon as the port answers (a quick "systemctl stop")
    # still stops the daemon cleanly, once it has started, instead of killing it half-way.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await daemon.start()
    _freeze()
    watchdog: asyncio.Task[None] | None = None
    try:  # from here on, whatever fails (e.g. an unreachable NOTIFY_SOCKET) closes the listeners first
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(daemon, config_file))
        notify("READY=1")
        watchdog = asyncio.create_task(_watchdog(daemon), name="watchdog")
        await stopping.wait()
        log.info("daemon.stopping")
        _tell_systemd("STOPPING=1")
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await daemon.stop()


def _tell_systemd(state: str) -> None:
    """Notify systemd while running: a lost message is logged, never a reason to stop serving mail."""
    try:
        notify(state)
    except NotifyError as error:
        log.error("daemon.notify_failed", state=state, error=str(error))


def _freeze() -> None:
    """Leave what the daemon holds now (modules, templates, the configuration: built to start or to reload, and kept
    until the next reload) out of the collector's full passes, each of which stopped the event loop for about 30 ms
    in a stream of mail.  What was frozen before is let go first and garbage collected, or it would stay for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _reload(daemon: Daemon, config_file: Path | None) -> None:
    _tell_systemd("RELOADING=1")
    try:
        restart = daemon.reload(load_config(config_file))
    except Exception as error:  # a bad new config or template: keep running on the old one
        log.error("daemon.reload_refused", error=str(error), config=str(config_file or "embedded defaults"))
    else:
        _freeze()  # what the old configuration and templates held is collected now, the new ones frozen
        set_level(daemon.config.log.level)
        log.info("daemon.reloaded", config=daemon.config.source, needs_restart=restart,
                 log_level=daemon.config.log.level)
    _tell_systemd("READY=1")


async def _watchdog(daemon: Daemon) -> None:
    """Tell systemd the loop is alive, twice per ``WatchdogSec`` (only when the unit sets one)."""
    microseconds = os.environ.get("WATCHDOG_USEC")
    if not microseconds or not microseconds.isdigit():
        return
    interval = int(microseconds) / 2_000_000
    while True:
        report = await daemon.health()
        if report["database"]["ok"]:
            _tell_systemd("WATCHDOG=1")
        else:
            log.error("daemon.unhealthy", report=report)
        await asyncio.sleep(interval)
