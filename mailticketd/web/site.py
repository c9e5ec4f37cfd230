"""What every helpdesk page shares: rendering for the visitor, redirects, the log-in guard, and reading forms.

Forms are read with caps: a plain form at most ``MAX_FORM`` bytes; a form
with files streams its parts and stops keeping them at ``[smtp]
max_message_size`` in all or ``[http] max_attachments`` files, so that the
page can say what was too much instead of the connection breaking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import BodyPartReader, web

from mailticketd.config import Config
from mailticketd.storage import Database
from mailticketd.web.pages import Pages
from mailticketd.web.sessions import SessionDesk, VISITOR
from mailticketd.web.submit import Upload, WebInbox, safe_content_type

MAX_FORM = 64 * 1024
# One text field of a form with files (the answer's text); more belongs in an attached file.
MAX_TEXT = 256 * 1024
# Parts of one form (text fields, ticked VMs, files); more is no browser's form.
MAX_PARTS = 1000
# Seconds a client may take to send a form's body.
BODY_TIMEOUT = 120.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Why a form with files was not taken.
TOO_MANY_FILES = "too-many-files"
TOO_LARGE = "too-large"
TEXT_TOO_LONG = "text-too-long"


@dataclass
class Form:
    """A submitted form: its text fields (a list per name), its files, and the first limit it broke."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    problem: str | None = None

    def get(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])


class Site:
    """The helpdesk's shared parts; area modules (account, tickets, organisation) add their routes to it."""

    def __init__(self, config: Config, db: Database, pages: Pages, sessions: SessionDesk, inbox: WebInbox,
                 clock: Callable[[], datetime]) -> None:
        self.config = config
        self.db = db
        self.pages = pages
        self.sessions = sessions
        self.inbox = inbox
        self.clock = clock

    @property
    def prefix(self) -> str:
        """The path under which the proxy serves us (from ``[http] base_url``), "" at the root."""
        return urlsplit(self.config.http.base_url).path.rstrip("/")

    def page(self, request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
        """Page ``name`` in the visitor's language, with the layout's facts about the visitor."""
        visitor = request[VISITOR]
        html = self.pages.render(name, visitor.language, user=visitor.page_user(), csrf=visitor.csrf,
                                 prefix=self.prefix, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def redirect(self, path: str) -> web.Response:
        """303 to one of our own paths (after a POST, or to the log-in)."""
        return web.Response(status=303, headers={"Location": f"{self.prefix}{path}"})

    def forbidden(self, request: web.Request) -> web.Response:
        """A form without the right CSRF token: nothing was changed."""
        return self.page(request, "forbidden", status=403)

    def missing(self, request: web.Request) -> web.Response:
        """The same answer for what does not exist and what is not the visitor's (no probing)."""
        return self.page(request, "missing", status=404)

    async def form(self, request: web.Request, *, files: bool = False) -> Form | None:
        """The submitted form; None when a plain form is too large to read at all.

        The body must arrive within ``BODY_TIMEOUT``: a client trickling it holds no connection for long.
        """
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                return await self._read(request, files)
        except TimeoutError:
            raise web.HTTPRequestTimeout() from None

    async def _read(self, request: web.Request, files: bool) -> Form | None:
        if files and request.content_type.startswith("multipart/"):
            return await self._multipart(request)
        limit = MAX_TEXT + MAX_FORM if files else MAX_FORM
        if request.content_length is None or request.content_length > limit:
            return None
        form = Form()
        for name, value in (await request.post()).items():
            if isinstance(value, str):
                form.fields.setdefault(name, []).append(value)
        return form

    async def _multipart(self, request: web.Request) -> Form:
        """Stream the parts: files up to the mail budget, text up to ``MAX_TEXT`` in all, ``MAX_PARTS`` parts."""
        form = Form()
        budget = self.config.smtp.max_message_size
        hard_limit = budget + MAX_TEXT + MAX_FORM  # past this the body is not read on: the connection closes
        used = read = text_bytes = parts = 0
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > MAX_PARTS:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_PARTS, actual_size=parts)
            await asyncio.sleep(0)  # many tiny parts must not hold the loop
            if not isinstance(part, BodyPartReader):
                continue
            keep = form.problem is None
            limit = MAX_TEXT - text_bytes if part.filename is None else budget - used
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(64 * 1024):
                size += len(chunk)
                read += len(chunk)
                if read > hard_limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=hard_limit, actual_size=read)
                if keep and size <= limit:
                    chunks.append(chunk)
            if part.filename is None:
                text_bytes += size
                if text_bytes > MAX_TEXT:
                    form.problem = form.problem or TEXT_TOO_LONG
                    continue
                text = b"".join(chunks).decode(part.get_charset(default="utf-8") or "utf-8", "replace")
                form.fields.setdefault(part.name or "", []).append(text)
                continue
            if not part.filename and size == 0:
                continue  # a file field left empty
            if not keep:
                continue
            if len(form.uploads) >= self.config.http.max_attachments:
                form.problem = TOO_MANY_FILES
                continue
            used += size
            if used > budget:
                form.problem = TOO_LARGE
                continue
            filename = _file_name(part.filename)
            content_type = part.headers.get("Content-Type", "")
            form.uploads.append(Upload(filename, safe_content_type(content_type, filename), b"".join(chunks)))
        return form


def _file_name(name: str) -> str:
    """A file name without any folder part or control characters, never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()[:200]
    return base or "file"


def login_required(handler: Callable[[Any, web.Request], Awaitable[web.StreamResponse]]
                   ) -> Callable[[Any, web.Request], Awaitable[web.StreamResponse]]:
    """Send someone not logged in to the log-in page, and back here afterwards."""
    @wraps(handler)
    async def guarded(self: Any, request: web.Request) -> web.StreamResponse:
        visitor = request[VISITOR]
        if visitor.user is None:
            site: Site = self.site
            target = request.rel_url.path_qs if request.method == "GET" else "/tickets"
            if site.prefix and target.startswith(site.prefix):
                target = target[len(site.prefix):]
            return site.redirect(f"/login?next={quote(target, safe='')}")
        return await handler(self, request)
    return guarded
