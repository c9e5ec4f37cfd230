"""Build outgoing mails: the headers every mail carries, encoded so German clients show them right.

Most mails are put together from pre-built parts: the headers every mail
carries are encoded once per sender, the others by a small RFC 2047 encoder,
the body by ``binascii``'s quoted-printable coder (C).  That costs a tenth of
the standard ``email`` package, whose header folding also takes time that
grows with the square of a header's length.  What the fast path does not
vouch for (an address or Message-ID outside the plain ASCII forms, an
internationalised recipient, text that is no valid Unicode) goes through the
``email`` package as before.  Subjects and names are capped either way
(``mail.limits``), and callers in the event loop run ``compose`` in a worker
thread (``asyncio.to_thread``): its cost still grows with the body.
"""

from __future__ import annotations

import binascii
import email.policy
import functools
import re
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


# Plain ASCII addresses and Message-IDs, which the fast path writes as they are.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_PLAIN_ID = re.compile(r"[!-;=?-~]+")  # printable ASCII without "<" and ">"
# A display name that needs no quotes (RFC 5322 atoms and blanks).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
# Each UTF-8 byte as RFC 2047 "Q" writes it; safe in unstructured text and in phrases alike.
_Q = [chr(byte) if chr(byte).isascii() and (chr(byte).isalnum() or chr(byte) in "!*+-/") else f"={byte:02X}"
      for byte in range(256)]
_Q[0x20] = "_"
_WORD_PREFIX, _WORD_SUFFIX = "=?utf-8?q?", "?="
_WORD_ROOM = 75 - len(_WORD_PREFIX) - len(_WORD_SUFFIX)
_LINE = 78
_LONGEST_ID = 900  # a Message-ID on a line of its own stays within 998 bytes


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
    fields = dict(sender_name=capped(sender_name, NAME_BYTES), sender=sender, to=wire_address(to),
                  to_name=capped(to_name, NAME_BYTES), subject=capped(subject, SUBJECT_BYTES), body=body, now=now,
                  message_id=message_id, reply_to=reply_to, in_reply_to=in_reply_to, references=references,
                  auto_submitted=auto_submitted, loop=loop,
                  thread_topic=capped(thread_topic, SUBJECT_BYTES) if thread_topic else None,
                  thread_index=thread_index)
    try:
        raw = _from_parts(**fields)  # type: ignore[arg-type]
    except _NotPlain:
        raw = _with_email_package(**fields)  # type: ignore[arg-type]
    return Outgoing(message_id=message_id, raw=raw)


class _NotPlain(Exception):
    """Something the fast path does not write itself; the ``email`` package does."""


def _from_parts(*, sender_name: str, sender: str, to: str, to_name: str, subject: str, body: str, now: datetime,
                message_id: str, reply_to: str | None, in_reply_to: str | None, references: tuple[str, ...],
                auto_submitted: str, loop: str, thread_topic: str | None, thread_index: str | None) -> bytes:
    for address in (to, sender, *([reply_to] if reply_to else [])):
        if not _PLAIN_ADDRESS.fullmatch(address):
            raise _NotPlain
    for value in (message_id, *([in_reply_to] if in_reply_to else []), *references):
        if len(value) > _LONGEST_ID or not _PLAIN_ID.fullmatch(value):
            raise _NotPlain
    try:
        data = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: the email package decides what to make of it
        raise _NotPlain from error
    lines = [_sender_line(sender_name, sender),
             f"To: {_mailbox(to_name, to, len('To: '))}",
             f"Subject: {_subject(subject, len('Subject: '))}",
             f"Date: {_date(now)}",
             f"Message-ID: <{message_id}>"]
    if reply_to:
        lines.append(f"Reply-To: {reply_to}")
    if in_reply_to:
        lines.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        lines.append(f"References: {_folded([f'<{ref}>' for ref in references], len('References: '))}")
    lines.append(f"Auto-Submitted: {_unstructured(auto_submitted, len('Auto-Submitted: '))}")
    lines.append(_fixed_lines(loop))
    if thread_topic:
        lines.append(f"Thread-Topic: {_subject(thread_topic, len('Thread-Topic: '))}")
    if thread_index:
        lines.append(f"Thread-Index: {_unstructured(thread_index, len('Thread-Index: '))}")
    lines.append(_CONTENT)
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if not encoded.endswith(b"\n"):
        encoded += b"\n"
    return "\r\n".join(lines).encode("ascii") + b"\r\n\r\n" + encoded.replace(b"\n", b"\r\n")


_CONTENT = ('Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
            "MIME-Version: 1.0")


@functools.lru_cache(maxsize=8)
def _sender_line(name: str, address: str) -> str:
    """The ``From`` line: the same for every mail of one configuration."""
    return f"From: {_mailbox(name, address, len('From: '))}"


@functools.lru_cache(maxsize=8)
def _fixed_lines(loop: str) -> str:
    """The loop guard's marks, the same on every mail."""
    return f"X-Loop: {_unstructured(loop, len('X-Loop: '))}\r\nX-Auto-Response-Suppress: All"


def _mailbox(name: str, address: str, used: int) -> str:
    """``name <address>`` with the name quoted or encoded as it needs."""
    if not name:
        return address
    if _ATOMS.fullmatch(name) and name.strip() == name and "  " not in name:
        phrase = name
    elif name.isascii() and name.isprintable() and len(name) < 200:
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = _encoded_words(name, used)
        if "\r\n" in phrase:
            # Readers disagree on blanks between encoded words in a name: the email package writes long ones.
            raise _NotPlain
    last = phrase.rpartition("\r\n")
    if (used if not last[1] else 0) + len(last[2]) + len(address) + 3 > _LINE:
        return f"{phrase}\r\n <{address}>"
    return f"{phrase} <{address}>"


def _date(now: datetime) -> str:
    """The Date header's value: the letters of one mail are all written at its moment."""
    return _remembered_date(now, now.utcoffset())  # one instant in two zones is equal, but written differently


@functools.lru_cache(maxsize=8)
def _remembered_date(now: datetime, offset: object) -> str:
    return format_datetime(now)


# The cache holds at most 256 encodings of subjects capped at SUBJECT_BYTES (mail.limits): some 3.5 MB at worst.
@functools.lru_cache(maxsize=256)
def _subject(text: str, used: int) -> str:
    """A subject or thread topic, encoded: a mail's letters repeat their ticket's."""
    return _unstructured(text, used)


def _unstructured(text: str, used: int) -> str:
    """Text as an unstructured header value: folded at blanks when plain ASCII, else RFC 2047 encoded words."""
    if not text:
        return ""
    words = text.split(" ")
    if text.isascii() and text.isprintable() and all(word and len(word) + used < _LINE for word in words):
        return _folded(words, used)  # no empty word: no double, leading or trailing blank, no blank line
    return _encoded_words(text, used)


def _folded(words: list[str], used: int) -> str:
    """Words joined by blanks, a line break before a word that would pass the line's length."""
    out: list[str] = []
    width = used
    for word in words:
        if out and width + 1 + len(word) > _LINE:
            out.append("\r\n ")
            width = 1
        elif out:
            out.append(" ")
            width += 1
        out.append(word)
        width += len(word)
    return "".join(out)


def _encoded_words(text: str, used: int) -> str:
    """``text`` as UTF-8 "Q" encoded words of at most 75 characters, one a line, never splitting a character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _NotPlain from error
    words: list[str] = []
    current: list[str] = []
    size = 0
    room = min(_WORD_ROOM, _LINE - used - len(_WORD_PREFIX) - len(_WORD_SUFFIX))
    for char in text:
        encoded = _Q_CHARS.get(char) or _q_char(char)
        if current and size + len(encoded) > room:
            words.append(_WORD_PREFIX + "".join(current) + _WORD_SUFFIX)
            current, size, room = [], 0, _WORD_ROOM
        current.append(encoded)
        size += len(encoded)
    words.append(_WORD_PREFIX + "".join(current) + _WORD_SUFFIX)
    return "\r\n ".join(words)


# Each character's encoded form, worked out once (the letters of a desk repeat the same few hundred characters).
_Q_CHARS: dict[str, str] = {}


def _q_char(char: str) -> str:
    encoded = "".join(_Q[byte] for byte in char.encode("utf-8"))
    if len(_Q_CHARS) < 4096:  # a cap: what an attacker writes into a subject never grows it without end
        _Q_CHARS[char] = encoded
    return encoded


def _with_email_package(*, sender_name: str, sender: str, to: str, to_name: str, subject: str, body: str,
                        now: datetime, message_id: str, reply_to: str | None, in_reply_to: str | None,
                        references: tuple[str, ...], auto_submitted: str, loop: str, thread_topic: str | None,
                        thread_index: str | None) -> bytes:
    local, _, domain = to.rpartition("@")
    message = EmailMessage(policy=email.policy.SMTP if local.isascii() else email.policy.SMTPUTF8)
    message["From"] = Address(display_name=sender_name, addr_spec=sender)
    # username/domain rather than addr_spec: addr_spec refuses a non-ASCII local part outright.
    message["To"] = Address(display_name=to_name, username=local, domain=domain)
    message["Subject"] = subject
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
        message["Thread-Topic"] = thread_topic
    if thread_index:
        message["Thread-Index"] = thread_index
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message.as_bytes()
