"""The HTTP side: verification pages and the customer helpdesk, served by aiohttp in the daemon's event loop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.directory.passwords import Passwords
from mailticketd.outbox.mailer import Mailer
from mailticketd.storage import Database
from mailticketd.web.account import Account
from mailticketd.web.links import VerificationDesk
from mailticketd.web.organisation import OrganisationPages
from mailticketd.web.pages import PageError, Pages
from mailticketd.web.server import WebServer
from mailticketd.web.sessions import SessionDesk
from mailticketd.web.site import Site
from mailticketd.web.submit import WebInbox
from mailticketd.web.tickets import Tickets

__all__ = ["PageError", "WebServer", "build_web_server"]


def build_web_server(config: Config, db: Database, mailer: Mailer, pages: Pages | None = None, *,
                     on_queued: Callable[[], None] | None = None, on_stored: Callable[[], None] | None = None,
                     clock: Callable[[], datetime] = utc_now) -> WebServer:
    """The HTTP listener; ``pages`` already checked, else loaded and checked here (``PageError``).

    ``on_queued`` wakes the delivery worker (a mail was queued), ``on_stored`` the inbox worker (the helpdesk
    wrote a mail into the inbox).
    """
    if pages is None:
        pages = Pages(config.mail.templates, config.mail.from_name)
        pages.check()
    passwords = Passwords()
    desk = VerificationDesk(config, db, mailer, passwords, clock=clock, on_queued=on_queued)
    site = Site(config, db, pages, SessionDesk(config, db, passwords, clock=clock),
                WebInbox(config, db, on_stored=on_stored, clock=clock), clock)
    areas = (Account(site, mailer, on_queued), Tickets(site), OrganisationPages(site, mailer.templates))
    return WebServer(config, desk, site, areas)
