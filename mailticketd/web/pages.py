"""Load and render the HTML pages (``templates/<lang>/pages/<name>.html``), checked once at start-up.

Pages have their own jinja2 environment with autoescaping on, apart from
the plain-text mail templates.  Start-up renders every page in every
language with a sample context under ``StrictUndefined``, so a missing or
broken page stops the daemon before anyone opens a link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from mailticketd.config import LANGUAGES

_USER = {"name": "Anna Muster", "address": "anna@example.com", "manager": True}
_TICKET = {"number": 10042, "tag": "[MH#10042]", "subject": "Server down", "status": "waiting",
           "created": "01.12.2026 09:00", "updated": "01.12.2026 10:00", "closed": True, "reopens": False}
_PERSON = {"name": "Anna Muster", "address": "anna@example.com", "manager": True, "authorised": True,
           "until": "2026-12-31", "primary": True, "monitoring": True, "phone": "+49 30 1234"}
_REQUEST_VALUES = {"name": "", "address": "", "phone": "", "role": "primary", "note": "", "who": ""}

# Every page with a context like the one the web handlers pass (the layout's user, csrf and prefix included).
PAGE_SAMPLES: dict[str, dict[str, Any]] = {
    "set_password": {"address": "anna@example.com", "error": "mismatch", "min_length": 10, "max_length": 1024},
    "verified": {"address": "anna@example.com", "organisation": "Example GmbH", "authorised": True, "manager": True,
                 "may_log_in": True},
    "login": {"problem": "locked", "notice": "logged-out", "address": "anna@example.com", "next_page": "/tickets",
              "lockout_minutes": 15},
    "logout": {"user": _USER},
    "password": {"sent": True, "hours": 72},
    "missing": {"user": _USER},
    "tickets": {"user": _USER, "tickets": [{"number": 10042, "tag": "[MH#10042]", "subject": "Server down",
                                            "status": "open", "updated": "01.12.2026 10:00",
                                            "vms": ["de-fr-srv-0815"]}],
                "page": 2, "more": True, "shown_status": "open", "query": "backup", "manager": True, "notice": "pending",
                "organisation": "Example GmbH"},
    "ticket": {"user": _USER, "notice": "sent", "problem": "too-large", "text": "", "ticket": _TICKET,
               "reopen_days": 14, "vms": ["de-fr-srv-0815"],
               "participants": [{"name": "Anna", "address": "anna@example.com", "role": "requester"}],
               "articles": [{"id": 1, "support": False, "author": "Anna", "organisation": "Example GmbH",
                             "when": "01.12.2026 09:00", "text": "Hi", "quoted": "Hi\n> old",
                             "files": [{"name": "a.pdf", "size": 10, "url": "/tickets/10042/files/1/a.pdf"}]}],
               "max_attachments": 10, "max_megabytes": 26},
    "new_ticket": {"user": _USER, "problem": "generic-subject", "subject": "Hilfe", "text": "", "vms": ["de-fr-srv-0815"],
                   "chosen": ["de-fr-srv-0815"], "max_subject": 200, "max_attachments": 10, "max_megabytes": 26},
    "organisation": {"user": _USER, "organisation": "Example GmbH", "people": [_PERSON], "others": [_PERSON],
                     "may_request": True, "problem": "bad-address", "kind": "account", "values": _REQUEST_VALUES},
    "link_gone": {"reason": "expired", "renew_action": "/verify/t/renew"},
    "link_sent": {"hours": 72},
    "renew_limited": {},
    "not_found": {},
    "forbidden": {},
}


class PageError(Exception):
    """A page template is missing or does not render; the message names it."""


class Pages:
    """The HTML pages of one template folder, in every supported language."""

    def __init__(self, folder: Path, site_name: str) -> None:
        self.folder = folder
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
            autoescape=True, trim_blocks=True, lstrip_blocks=True,
        )
        self.env.globals["site_name"] = site_name

    def check(self) -> None:
        """Render every page in every language with its sample; raise ``PageError`` on the first fault."""
        for language in LANGUAGES:
            for name, sample in PAGE_SAMPLES.items():
                self.render(name, language, **sample)

    def render(self, name: str, language: str, **context: Any) -> str:
        """Page ``name``; the layout's ``user`` (None), ``csrf`` and ``prefix`` ("") may be left out."""
        context = {"user": None, "csrf": "", "prefix": ""} | context
        path = f"{language}/pages/{name}.html"
        try:
            return self.env.get_template(path).render(context, language=language)
        except jinja2.TemplateNotFound as error:
            raise PageError(f"{self.folder / path}: missing ({error.name})") from error
        except jinja2.TemplateError as error:
            raise PageError(f"{self.folder / path}: {type(error).__name__}: {error}") from error
