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

# Every page with a context like the one the web handlers pass.
PAGE_SAMPLES: dict[str, dict[str, Any]] = {
    "set_password": {"address": "anna@example.com", "error": "mismatch", "min_length": 10, "max_length": 1024},
    "verified": {"address": "anna@example.com"},
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
        path = f"{language}/pages/{name}.html"
        try:
            return self.env.get_template(path).render(context, language=language)
        except jinja2.TemplateNotFound as error:
            raise PageError(f"{self.folder / path}: missing ({error.name})") from error
        except jinja2.TemplateError as error:
            raise PageError(f"{self.folder / path}: {type(error).__name__}: {error}") from error
