"""Load and render the mail templates (``templates/<lang>/<name>.txt``), checked once at start-up.

Each template has a ``subject`` and a ``body`` block.  Start-up renders every
template in every language with a sample context under ``StrictUndefined``,
so a missing or broken template stops the daemon before the first mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from mailticketd.config import LANGUAGES

_TICKET = {"number": 10042, "tag": "[MH#10042]", "subject": "Server down", "organisation": "Example GmbH",
           "representation": {"unrepresented": True, "temporary": [{"address": "md@example.com",
                                                                     "until": "2026-12-31"}]}}
_RECIPIENT = {"address": "anna@example.com", "name": "Anna"}

# Every template with a context like the ones the daemon passes.
SAMPLES: dict[str, dict[str, Any]] = {
    "ack": {"ticket": _TICKET, "recipient": _RECIPIENT, "verification_url": "https://x/verify/t",
            "verification_hours": 72, "login_url": "https://x/login", "no_authorised_contact": True,
            "hints": {"subject": "Hilfe", "vm_scheme": "de-XX-srv-XXXX", "vms": ["de-fr-srv-0815"], "topics": True}},
    "no_subject": {},
    "split": {"ticket": _TICKET, "from_ticket": _TICKET, "recipient": _RECIPIENT},
    "password": {"recipient": _RECIPIENT, "verification_url": "https://x/verify/t", "verification_hours": 72,
                 "login_url": "https://x/login"},
    "request_account": {"organisation": "Example GmbH", "requester": _RECIPIENT, "authorise": True, "note": "Hi",
                        "person": {"name": "Bob", "address": "bob@example.com", "phone": "+49 30 1234"}},
    "request_contact": {"organisation": "Example GmbH", "requester": _RECIPIENT, "role": "primary", "member": False,
                        "note": "Hi", "person": {"name": "Bob", "address": "bob@example.com", "phone": "+49 30 1"}},
    "request_left": {"organisation": "Example GmbH", "requester": _RECIPIENT, "note": "Hi",
                     "person": {"name": "Bob", "address": "bob@example.com"}},
    "reply": {"ticket": _TICKET, "recipient": _RECIPIENT, "text": "Hello"},
    "copy": {"ticket": _TICKET, "recipient": _RECIPIENT, "author": "bob@example.com", "text": "Hello"},
    "status": {"ticket": _TICKET, "recipient": _RECIPIENT, "status": "closed", "reopen_days": 14},
    "verify": {"recipient": _RECIPIENT, "verification_url": "https://x/verify/t", "verification_hours": 72},
    "operator_notice": {
        "ticket": _TICKET, "event": "new", "author": "anna@example.com", "author_status": "unverified",
        "sender_check": "unverified",
        "vms": [{"name": "de-fr-srv-0815", "organisation": "Other AG", "flags": ["other-organisation"]}],
        "flags": ["refused-reference:10001:tag"], "attachments": [{"name": "a.pdf", "size": 10}], "text": "Hi",
        "via_web": True, "tag_prefix": "MH#", "former_organisation": "Example GmbH",
        "recipients": [{"address": "anna@example.com", "name": "Anna", "status": "authorised"},
                       {"address": "x@other.example", "name": "", "status": "unverified"}],
    },
    "nothing_sent": {"ticket": _TICKET},
    "inbox_failed": {"inbox_id": 42, "reason": "OperationalError: disk I/O error", "mail_from": "anna@example.com",
                     "message_id": "x@example.com", "received_at": "2026-01-01T00:00:00+00:00"},
    "command_result": {"ticket": _TICKET, "done": False, "results": [
        {"command": "#primary", "argument": "anna@example.com", "error": None},
        {"command": "#authorise", "argument": "bob@example.com", "error": "unknown user 'bob@example.com'",
         "code": "unknown-user", "params": {"address": "bob@example.com"}},
        {"command": "#left", "argument": "x", "error": "the ticket's requester ...", "code": "requester-not-authorised",
         "params": {"requester": "a@example.com", "organisation": "Example GmbH", "override": "#left! x"}}]},
    "command_error": {"ticket": _TICKET, "unknown": ["#clsoe"], "valid": ["#note", "#close"]},
    "not_enabled": {"ticket": _TICKET, "recipient": _RECIPIENT},
    "test": {"recipient": "admin@example.com", "transport": "smtp", "sent_at": "2026-01-01T00:00:00+00:00"},
    "delivery_failed": {"ticket": _TICKET, "recipient": "anna@example.com", "error": "550 5.1.1 unknown",
                        "original_subject": "[MH#10042] Server down"},
    "welcome": {"recipient": _RECIPIENT, "organisation": "Example GmbH", "authorised": True, "manager": True,
                "verification_url": "https://x/verify/t", "verification_hours": 72, "login_url": "https://x/login"},
    "temporary_authorisation": {"recipient": _RECIPIENT, "organisation": "Example GmbH", "until": "2026-12-31",
                                "login_url": "https://x/login"},
    "no_authorised_contact": {"organisation": "Example GmbH", "person": {"address": "bob@example.com", "name": "Bob"},
                              "cause": "left", "roles": ["primary"]},
    "contact_left": {"recipient": _RECIPIENT, "organisation": "Example GmbH", "organisation_url": "https://x/organisation",
                     "left": {"address": "bob@example.com", "name": "Bob"}, "roles": ["primary", "monitoring"]},
}


class TemplateError(Exception):
    """A template is missing or does not render; the message names it."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class _Environment(jinja2.Environment):
    """jinja2's environment, reading ``ticket.subject`` from a dict without first asking the dict for an attribute of
    that name (an exception each time, for every field of every letter).  A dict's methods (``ways.get``) are still
    found when no key has their name, and the contexts' keys are the daemon's own."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class Templates:
    """The mail templates of one folder, in every supported language."""

    def __init__(self, folder: Path, organisation_name: str = "") -> None:
        self.folder = folder
        self.env = _Environment(
            loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False,  # read once: a reload (SIGHUP) builds new Templates; no stat() a letter
        )
        self.env.globals["organisation_name"] = organisation_name  # the provider, named in every footer

    def check(self) -> None:
        """Render every template in every language with its sample; raise ``TemplateError`` on the first fault."""
        for language in LANGUAGES:
            for name, sample in SAMPLES.items():
                self.render(name, language, **sample)

    def render(self, name: str, language: str, **context: Any) -> Rendered:
        path = f"{language}/{name}.txt"
        try:
            template = self.env.get_template(path)
            ctx = template.new_context(context)
            subject = "".join(template.blocks["subject"](ctx))
            body = "".join(template.blocks["body"](ctx))
        except KeyError as error:
            raise TemplateError(f"{self.folder / path}: needs a {error} block") from error
        except jinja2.TemplateNotFound as error:
            raise TemplateError(f"{self.folder / path}: missing ({error.name})") from error
        except jinja2.TemplateError as error:
            raise TemplateError(f"{self.folder / path}: {type(error).__name__}: {error}") from error
        return Rendered(" ".join(subject.split()), body.strip("\n") + "\n")
