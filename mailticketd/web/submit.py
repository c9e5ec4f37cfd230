"""What a customer writes in the web helpdesk enters the desk as a mail: into the inbox, through the pipeline.

An answer or a new ticket is composed as an ordinary MIME mail from the
logged-in person to the support address and stored in the inbox with its
*origin* (the person, the ticket answered, the VMs ticked) in a column of
its own that no SMTP sender can set.  The inbox worker then runs the same
pipeline as for any mail (DESIGN §7a): the same rules for reopening, the
same notices to operators, the same acknowledgement.  The page waits a
moment for that to happen so that it can show the result.
"""

from __future__ import annotations

import asyncio
import email.policy
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailticketd.config import Config
from mailticketd.directory.models import User
from mailticketd.mail.compose import new_message_id
from mailticketd.storage import Database
from mailticketd.storage.inbox import InboxRow

# How long a page waits for the pipeline before it answers "being processed".
WAIT_FOR_PIPELINE = 5.0
# A subject is one line of at most this many characters.
MAX_SUBJECT = 200
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}$")


@dataclass(frozen=True)
class Upload:
    name: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class WebMail:
    """What was typed: the text, a subject, the files, and where it belongs."""

    author: User
    subject: str
    text: str
    uploads: tuple[Upload, ...] = ()
    ticket_number: int | None = None  # None: a new ticket
    vms: tuple[str, ...] = ()


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """A subject as one line without control characters, at most ``limit`` characters."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def safe_content_type(value: str, name: str) -> str:
    """The browser's type if it is a plain ``type/subtype``, else a guess from the name, else octet-stream."""
    value = value.strip().lower()
    if _CONTENT_TYPE.match(value):
        return value
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def compose_web_mail(mail: WebMail, *, support: str, now: datetime) -> tuple[str, bytes]:
    """The MIME mail for ``mail`` and its Message-ID; CPU-bound for large files, so run in a thread."""
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        message["From"] = Address(display_name=one_line(mail.author.name, 100), addr_spec=mail.author.address)
    except (ValueError, IndexError):
        message["From"] = mail.author.address
    message["To"] = support
    message["Subject"] = one_line(mail.subject)
    message["Date"] = format_datetime(now)
    message_id = new_message_id(support.partition("@")[2])
    message["Message-ID"] = f"<{message_id}>"
    message["X-Mailticketd-Origin"] = "web"  # for a reader of the raw mail; the pipeline trusts only the column
    message.set_content(mail.text.replace("\r\n", "\n"), charset="utf-8", cte="quoted-printable")
    for upload in mail.uploads:
        maintype, _, subtype = upload.content_type.partition("/")
        message.add_attachment(upload.content, maintype=maintype, subtype=subtype, filename=upload.name)
    return message_id, message.as_bytes()


class WebInbox:
    """Puts web mail into the inbox and waits for the pipeline's verdict."""

    def __init__(self, config: Config, db: Database, *, on_stored: Callable[[], None] | None = None,
                 clock: Callable[[], datetime]) -> None:
        self.config = config
        self.db = db
        self.on_stored = on_stored
        self.clock = clock

    async def submit(self, mail: WebMail, client: str) -> InboxRow | None:
        """Store the mail; returns its inbox row once processed, or None while it is still waiting."""
        support = self.config.mail.support_address
        message_id, raw = await asyncio.to_thread(compose_web_mail, mail, support=support, now=self.clock())
        origin = {"user_id": mail.author.id, "ticket": mail.ticket_number, "vms": list(mail.vms)}
        async with self.db.transaction() as store:
            inbox_id = await store.inbox.add(peer=f"web {client}", mail_from=mail.author.address, rcpt_tos=[support],
                                             message_id=message_id, raw=raw, origin=origin)
        if self.on_stored is not None:
            self.on_stored()
        deadline = time.monotonic() + WAIT_FOR_PIPELINE
        while time.monotonic() < deadline:
            async with self.db.read() as store:
                row = await store.inbox.get(inbox_id)
            if row is not None and row.status != "pending":
                return row
            await asyncio.sleep(0.05)
        return None
