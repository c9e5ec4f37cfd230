"""Build what a process needs to queue mail, the same way for the daemon and the staff CLI."""

from __future__ import annotations

from mailticketd.config import Config
from mailticketd.mail.templates import Templates
from mailticketd.outbox.mailer import Mailer
from mailticketd.pipeline.order import Pipeline
from mailticketd.tickets.tokens import TokenSigner, load_signer
from mailticketd.web.pages import Pages


class SecretsNotShared(Exception):
    """Several daemons share the database but the reply-token secret would be this host's own."""


def require_shared_secrets(config: Config) -> None:
    """Refuse a shared (PostgreSQL) database without configured reply-token secrets."""
    if config.storage.shared and not config.mail.token_secrets:
        raise SecretsNotShared(
            "[mail] token_secrets must be set when the database is PostgreSQL: every daemon on it must sign reply "
            "tokens with the same secrets, and a secret generated on this host would be known to no other")


def signer_for(config: Config) -> TokenSigner:
    """The reply-token signer: the configured secrets, else (SQLite only) the one kept in the state directory.

    Daemons sharing a PostgreSQL database must sign alike, so there a missing ``[mail] token_secrets`` refuses the
    start instead of making a secret that only this host knows.
    """
    require_shared_secrets(config)
    return load_signer(config.mail.token_secrets, config.storage.database.parent)


def make_mailer(config: Config) -> Mailer:
    """A mailer on the configured templates and reply-token secrets (the daemon's, read from the state directory)."""
    templates = Templates(config.mail.templates, config.mail.organisation_name)
    return Mailer(config, templates, signer_for(config))


def check_start_up(config: Config) -> tuple[Templates, Pages, Pipeline]:
    """Everything start-up checks without binding a port or touching the state: templates, pages, pipeline, and
    that daemons sharing a database share their reply-token secrets."""
    require_shared_secrets(config)
    templates = Templates(config.mail.templates, config.mail.organisation_name)
    templates.check()
    pages = Pages(config.mail.templates, config.mail.from_name)
    pages.check()
    return templates, pages, Pipeline()
