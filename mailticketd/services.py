"""Build what a process needs to queue mail, the same way for the daemon and the staff CLI."""

from __future__ import annotations

from mailticketd.config import Config
from mailticketd.mail.templates import Templates
from mailticketd.outbox.mailer import Mailer
from mailticketd.pipeline.order import Pipeline
from mailticketd.tickets.tokens import load_signer
from mailticketd.web.pages import Pages


def make_mailer(config: Config) -> Mailer:
    """A mailer on the configured templates and reply-token secrets (the daemon's, read from the state directory)."""
    templates = Templates(config.mail.templates, config.mail.organisation_name)
    signer = load_signer(config.mail.token_secrets, config.storage.database.parent)
    return Mailer(config, templates, signer)


def check_start_up(config: Config) -> tuple[Templates, Pages, Pipeline]:
    """Everything start-up checks without binding a port or touching the state: templates, pages, pipeline."""
    templates = Templates(config.mail.templates, config.mail.organisation_name)
    templates.check()
    pages = Pages(config.mail.templates, config.mail.from_name)
    pages.check()
    return templates, pages, Pipeline()
