"""Turn the raw bytes of one incoming mail into an immutable IncomingMail; never raise."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import email.utils
import functools
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email import feedparser
from email.feedparser import BytesFeedParser
from email.message import Message
from types import MappingProxyType
from typing import Any

import mailparser
from mailparser.utils import get_addresses

from mailticketd.mail.charsets import (
    ENCODED_RUN, collapse, decode_bytes, decode_header_text, decode_run, unfolded,
)
from mailticketd.mail.html import html_to_text
from mailticketd.mail.mime import Attachment, Body, DecodingMessage, attempt
from mailticketd.mail.limits import NAME_BYTES, SUBJECT_BYTES, capped

__all__ = ["Address", "Attachment", "IncomingMail", "parse_mail", "parse_mail_chunks"]


@dataclass(frozen=True)
class Address:
    address: str  # addr-spec only, lower-cased; never the display name
    name: str  # decoded display name, "" if none


@dataclass(frozen=True)
class IncomingMail:
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    dropped_attachments: tuple[str, ...]  # names of empty attachments, noted rather than kept
    headers: Mapping[str, tuple[str, ...]]
    defects: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """Return the first decoded value of header `name` (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Sent back from a parse process (inbox/prepare.py): a mapping proxy cannot be pickled, its dict can.
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fields["headers"] = dict(self.headers)
        return _unpickled, (fields,)


def _unpickled(fields: dict[str, Any]) -> IncomingMail:
    return IncomingMail(**(fields | {"headers": MappingProxyType(fields["headers"])}))


_QUOTED_STRING_ESCAPES = str.maketrans({c: "\\" + c for c in '"()\\'})


def _quotable(run: re.Match[str]) -> str:
    return decode_run(run.group(0)).translate(_QUOTED_STRING_ESCAPES)


def _prequote(text: str) -> str:
    """Decode encoded words before address parsing, quoted, so a decoded comma stays in the name.

    A linear scan rather than a regex: unterminated quotes must not cost quadratic time.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        opener = text[i]
        if opener in '"(<':
            closer = {'"': '"', "(": ")", "<": ">"}[opener]
            j = i + 1
            while j < len(text) and text[j] != closer:
                j += 2 if text[j] == "\\" and opener != "<" else 1
            inner, tail = text[i + 1 : j], text[j : j + 1]
            if opener != "<":  # quoted string or comment: decode the words inside it
                inner = ENCODED_RUN.sub(_quotable, inner)
            out.append(opener + inner + tail)
            i = j + 1
        elif match := ENCODED_RUN.match(text, i):
            out.append(f'"{_quotable(match)}"')
            i = match.end()
        else:
            out.append(opener)
            i += 1
    return "".join(out)


# The same address headers come again and again (every mail to the support address, a customer's every mail):
# a parse process keeps the pairs of the recent ones, of headers up to this length.
_REMEMBERED_HEADER = 1000


@functools.lru_cache(maxsize=512)
def _remembered_pairs(text: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    return _read_pairs(text)


def _pairs(text: str) -> tuple[Sequence[tuple[str, str]], Sequence[str]]:
    """mail-parser's (name, address) pairs of an address header, and why it found parts of it unusable."""
    return _remembered_pairs(text) if len(text) <= _REMEMBERED_HEADER else _read_pairs(text)


def _read_pairs(text: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    diagnostics: list[dict[str, Any]] = []
    pairs = get_addresses(text, defects=diagnostics, decode_names=True)
    return tuple(pairs), tuple(str(entry.get("reason", "unreadable")) for entry in diagnostics)


def _addresses(values: Iterable[object], notes: list[str], hint: str | None, header: str) -> tuple[Address, ...]:
    found: dict[str, Address] = {}
    for index, value in enumerate(values):
        text = _prequote(unfolded(value, hint, detecting=index == 0))
        pairs: Iterable[tuple[str, str]]
        try:
            pairs, reasons = _pairs(text)
            notes.extend(f"{header}: {reason}" for reason in reasons)
        except Exception as exc:  # noqa: BLE001 - mail-parser raises more than its own errors
            notes.append(f"address header fell back to email.utils: {type(exc).__name__}: {exc}")
            pairs = email.utils.getaddresses([text])
        for name, addr in pairs:
            addr = addr.strip().lower()
            if not addr or any(c.isspace() or c in "<>" for c in addr):
                continue  # no usable mailbox; a display name is never promoted to one
            name = capped(collapse(name), NAME_BYTES)
            found.setdefault(addr, Address(addr, "" if name.lower() == addr else name))
    return tuple(found.values())


_BRACKETED_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")


def _message_ids(values: Iterable[str]) -> tuple[str, ...]:
    ids: dict[str, None] = {}
    for value in values:
        found = _BRACKETED_ID.findall(value)
        if not found:  # tolerate bare and comma-separated ids, never bare words
            tokens = [t.strip("<>\"'") for t in re.split(r"[\s,]+", value) if t.strip("<>\"'")]
            found = [t for t in tokens if "@" in t] or (tokens if len(tokens) == 1 else [])
        ids.update(dict.fromkeys(i.strip("\"'") for i in found))
    return tuple(i for i in ids if i)


def _date(value: str | None) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value or "")
    except Exception:  # noqa: BLE001 - an unparseable date is simply absent
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# Past this size the mail is parsed in chunks by the standard library alone: fed at once, the
# parser holds the text, a list of all its lines and the joined payloads together (about 8x the mail).
_LARGE = 1 << 20
_CHUNK = 1 << 16


def _message(raw: bytes, notes: list[str]) -> tuple[Message, list[Mapping[str, Any]]]:
    """The parsed tree, and the attachments mail-parser found (it recovers some a damaged tree hides)."""
    if len(raw) > _LARGE:
        view = memoryview(raw)
        return _message_in_chunks((bytes(view[start:start + _CHUNK]) for start in range(0, len(raw), _CHUNK)),
                                  notes), []
    try:
        message = email.message_from_bytes(raw)  # the tree mail-parser reads (the standard library's, compat32)
        if _sound(message):
            # mail-parser's second reading recovers attachments only from a damaged tree: for a sound one it finds
            # nothing the walk below misses, and costs a third of the parsing (its headers, addresses, logging).
            return message, []
        parsed = mailparser.MailParser(message)
        for entry in parsed.defects:  # a list of {part or header kind: [descriptions]}
            notes.extend(f"{kind}: {item}" for kind, items in entry.items() for item in items)
        return message, attempt(notes, "mail-parser's attachments", lambda: list(parsed.attachments), [])
    except Exception as exc:  # noqa: BLE001 - HeaderParseError, ValueError, TypeError, AttributeError...
        notes.append(f"fell back to email.message_from_bytes: {type(exc).__name__}: {exc}")
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        notes.extend(f"{part.get_content_type()}: {type(d).__name__}" for d in part.defects)
    return message, []


def _sound(message: Message) -> bool:
    """No part of the tree has a defect the standard library noticed (a missing boundary, a broken header...), and
    none is an attached mail: mail-parser also takes the attachments inside one (a forwarded invoice's PDF), which
    the walk below keeps whole as the attached mail."""
    return not any(part.defects or part.get_content_maintype() == "message" for part in message.walk())


def _message_in_chunks(chunks: Iterable[bytes], notes: list[str]) -> Message:
    """Feed the parser piece by piece; each big base64 attachment is decoded as soon as its part ends and its
    text dropped (``DecodingMessage``), so the tree never holds all of the mail's text at once."""
    parser = BytesFeedParser(_factory=DecodingMessage, policy=email.policy.compat32)
    parser._input = _TakingInput(parser)  # type: ignore[attr-defined]
    first = True
    for chunk in chunks:
        if first and (match := _LEADING_BLANK_LINES.match(chunk)):
            chunk = chunk[match.end() :]
            notes.append("removed blank lines before the header")
        first = False
        parser.feed(chunk)
    message = parser.close()
    for part in message.walk():
        notes.extend(f"{part.get_content_type()}: {type(d).__name__}" for d in part.defects)
    return message


class _TakingInput(feedparser.BufferedSubFile):  # type: ignore[name-defined,misc] # not in typeshed
    """The feed parser's line buffer that offers each line of a part's body to the part (``DecodingMessage.take``)
    and gives the parser a newline in its place when the part kept it."""

    def __init__(self, parser: BytesFeedParser) -> None:
        super().__init__()
        # Weak: a cycle would keep the parser's last part, and with it an attachment's bytes, until the cyclic
        # garbage collector runs (which big bytes objects do not prompt), so several mails' attachments piled up.
        self._parser = weakref.ref(parser)

    def readline(self) -> Any:
        line = super().readline()
        parser = self._parser()
        current = getattr(parser, "_cur", None)
        if not (isinstance(line, str) and line and isinstance(current, DecodingMessage)):
            return line
        if current.undecided() and any(isinstance(outer, Message) and outer.get_content_maintype() == "message"
                                       for outer in getattr(parser, "_msgstack", [])[:-1]):
            current.refuse()  # inside an attached mail, which is kept whole as the parser read it
        return "\n" if current.take(line) else line


_READ_HEADERS = frozenset({"subject", "from", "to", "cc", "reply-to"})


def _declared_charset(message: Message) -> str | None:
    """The charset the first text part declares: raw 8-bit headers are mostly written in it."""
    for part in message.walk():
        if part.get_content_maintype() == "text" and (charset := part.get_param("charset")):
            return str(charset)
    return None


_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t]*\r?\n)+(?=[!-9;-~]+:)")


def _build(raw: bytes) -> IncomingMail:
    notes: list[str] = []
    if match := _LEADING_BLANK_LINES.match(raw):
        raw = raw[match.end() :]
        notes.append("removed blank lines before the header")
    message, found = _message(raw, notes)
    return _reading(message, found, notes)


def _reading(message: Message, found: list[Mapping[str, Any]], notes: list[str]) -> IncomingMail:
    hint = attempt(notes, "declared charset", lambda: _declared_charset(message), None)
    items: list[tuple[str, str]] = attempt(
        notes, "headers", lambda: [(name.lower(), value) for name, value in message.raw_items()], []
    )
    headers: dict[str, list[str]] = {}
    for name, value in items:
        # Detection only for the first of the headers a person reads: a mail may carry thousands of headers.
        detecting = name in _READ_HEADERS and name not in headers
        headers.setdefault(name, []).append(
            attempt(notes, name, lambda: decode_header_text(value, hint, detecting=detecting), ""))

    def addresses(name: str) -> tuple[Address, ...]:
        values = [v for n, v in items if n == name]
        return attempt(notes, name, lambda: _addresses(values, notes, hint, name), ())

    senders = addresses("from")
    body = Body(notes, hint)
    attempt(notes, "body", lambda: body.visit(message), None)
    attempt(notes, "attachments", lambda: body.add_missing(found), None)
    text = body.plain or ""
    if not text.strip() and body.html:
        text = attempt(notes, "html body", lambda: html_to_text(body.html or ""), "")
    message_ids = _message_ids(headers.get("message-id", [])[:1])
    return IncomingMail(
        from_=senders[0] if senders else None,
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=addresses("reply-to"),
        subject=capped(collapse(headers.get("subject", [""])[0]), SUBJECT_BYTES),
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(headers.get("in-reply-to", [])),
        references=_message_ids(headers.get("references", [])),
        date=_date(headers.get("date", [""])[0]),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
        dropped_attachments=tuple(body.dropped),
        headers=MappingProxyType({name: tuple(values) for name, values in headers.items()}),
        defects=tuple(notes),
    )


def parse_mail(raw: bytes) -> IncomingMail:
    """Parse raw mail bytes; on total failure keep the raw text and say why. Never raises."""
    try:
        return _build(bytes(raw))
    except Exception as exc:  # noqa: BLE001 - a parse error must never reach SMTP
        try:
            data = bytes(raw)
        except Exception:  # noqa: BLE001 - not even bytes-like
            data = str(raw).encode("utf-8", "surrogateescape")
        return _unparseable(data, exc)


def parse_mail_chunks(source: Callable[[], Iterable[bytes]]) -> IncomingMail:
    """Parse a big mail from its pieces (``source()`` yields them; it is called again only to keep the raw text
    on total failure), never holding the whole mail's bytes. Never raises."""
    notes: list[str] = []
    try:
        return _reading(_message_in_chunks(source(), notes), [], notes)
    except Exception as exc:  # noqa: BLE001 - a parse error must never reach SMTP
        try:
            data = b"".join(source())
        except Exception as again:  # noqa: BLE001 - the stored bytes cannot be read either
            data = f"{type(again).__name__}: {again}".encode()
        return _unparseable(data, exc)


def _unparseable(data: bytes, exc: Exception) -> IncomingMail:
    text = decode_bytes(data).replace("\r\n", "\n").replace("\r", "\n")
    return IncomingMail(
        from_=None, to=(), cc=(), reply_to=(), subject="", message_id=None, in_reply_to=(),
        references=(), date=None, text=text, html=None, attachments=(), dropped_attachments=(),
        headers=MappingProxyType({}),
        defects=(f"unparseable, kept as raw text: {type(exc).__name__}: {exc}",),
    )
