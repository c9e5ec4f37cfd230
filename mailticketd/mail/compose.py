"""Build outgoing mails: the headers every mail carries, encoded so German clients show them right.

The standard ``email`` package takes time that grows with the square of a
header's length to fold it, so subjects and names are capped here
(``mail.limits``), and callers in the event loop run ``compose`` in a worker
thread (``asyncio.to_thread``): its cost still grows with the body.
"""

from __future__ import annotations

import email.policy
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailticketd.mail.limits import NAME_BYTES, SUBJECT_BYTES, capped

LOOP_HEADER = "X-Loop"


@dataclass(frozen=True)
class Outgoing:
    """One composed mail, ready for the outbox."""

    message_id: str  # without angle brackets
    raw: bytes


def wire_address(address: str) -> str:
    """``address`` as it goes on the wire: a non-ASCII domain in its IDNA (``xn--``) form."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:  # not a valid IDN: left as it is, for an SMTPUTF8 relay to judge
        return address


def new_message_id(domain: str) -> str:
    return f"{uuid.uuid4().hex}@{domain}"


def compose(
    *,
    sender_name: str,
    sender: str,
    to: str,
    to_name: str = "",
    subject: str,
    body: str,
    now: datetime,
    message_id: str,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    auto_submitted: str = "auto-generated",
    loop: str,
    thread_topic: str | None = None,
    thread_index: str | None = None,
) -> Outgoing:
    """A text/plain UTF-8 mail with stable Message-ID, threading headers and the loop guard's marks.

    A recipient whose address is not ASCII even with its domain in IDNA form
    gets an internationalised mail (RFC 6532 headers), which only a relay
    offering SMTPUTF8 takes.  Subject and names are capped (an attacker's
    megabyte subject costs the standard library quadratic time).
    """
    local, _, domain = wire_address(to).rpartition("@")
    message = EmailMessage(policy=email.policy.SMTP if local.isascii() else email.policy.SMTPUTF8)
    message["From"] = Address(display_name=capped(sender_name, NAME_BYTES), addr_spec=sender)
    # username/domain rather than addr_spec: addr_spec refuses a non-ASCII local part outright.
    message["To"] = Address(display_name=capped(to_name, NAME_BYTES), username=local, domain=domain)
    message["Subject"] = capped(subject, SUBJECT_BYTES)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{message_id}>"
    if reply_to:
        message["Reply-To"] = reply_to
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = " ".join(f"<{ref}>" for ref in references)
    message["Auto-Submitted"] = auto_submitted
    message[LOOP_HEADER] = loop
    message["X-Auto-Response-Suppress"] = "All"
    if thread_topic:
        message["Thread-Topic"] = capped(thread_topic, SUBJECT_BYTES)
    if thread_index:
        message["Thread-Index"] = thread_index
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return Outgoing(message_id=message_id, raw=message.as_bytes())
