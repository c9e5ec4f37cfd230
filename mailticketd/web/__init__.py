"""The HTTP side: verification pages served by aiohttp in the daemon's event loop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.directory.passwords import Passwords
from mailticketd.outbox.mailer import Mailer
from mailticketd.storage import Database
from mailticketd.web.links import VerificationDesk
from mailticketd.web.pages import PageError, Pages
from mailticketd.web.server import WebServer

__all__ = ["PageError", "WebServer", "build_web_server"]


def build_web_server(config: Config, db: Database, mailer: Mailer, pages: Pages | None = None, *,
                     on_queued: Callable[[], None] | None = None,
                     clock: Callable[[], datetime] = utc_now) -> WebServer:
    """The HTTP listener; ``pages`` already checked, else loaded and checked here (``PageError``)."""
    if pages is None:
        pages = Pages(config.mail.templates, config.mail.from_name)
        pages.check()
    desk = VerificationDesk(config, db, mailer, Passwords(), clock=clock, on_queued=on_queued)
    return WebServer(config, desk, pages)
