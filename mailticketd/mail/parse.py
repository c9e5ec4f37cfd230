"""Turn the raw bytes of one incoming mail into an immutable IncomingMail; never raise."""

from __future__ import annotations

import base64
import codecs
import email
import email.policy
import email.utils
import hashlib
import mimetypes
import quopri
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import Message
from functools import partial
from types import MappingProxyType
from typing import TypeVar

import mailparser
from mailparser.utils import get_addresses

from mailticketd.mail.html import html_to_text
from mailticketd.mail.limits import NAME_BYTES, SUBJECT_BYTES, capped

T = TypeVar("T")


@dataclass(frozen=True)
class Address:
    address: str  # addr-spec only, lower-cased; never the display name
    name: str  # decoded display name, "" if none


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


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
    headers: Mapping[str, tuple[str, ...]]
    defects: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """Return the first decoded value of header `name` (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


# Codecs that are no charsets: they interpret backslashes or host names.
_REFUSED_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode"})
# Mailers label text in a superset with the older name (windows-1252 text as iso-8859-1);
# decoding with the superset gets the same printable text and the extra characters right.
_SUPERSETS = {"iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874", "iso8859-11": "cp874",
              "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949"}


def _codec(charset: str) -> str | None:
    try:
        info = codecs.lookup(charset.strip().strip("\"'").lower())
    except Exception:  # noqa: BLE001 - LookupError, or ValueError for a NUL in the name
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return _SUPERSETS.get(info.name, info.name)


def decode_bytes(data: bytes, charset: str | None = None, notes: list[str] | None = None) -> str:
    """Decode with the chain: declared charset, else UTF-8 strict, else cp1252 with replacement."""
    codec = _codec(charset) if charset else None
    if charset and codec is None and notes is not None:
        notes.append(f"unknown charset {charset!r}, decoded by fallback")
    # A us-ascii label on 8-bit data says nothing, so that data goes down the undeclared chain.
    for name in (codec, "utf-8"):
        if not name:
            continue
        try:
            text = data.decode(name)
            text.encode("utf-8")  # some codecs yield lone surrogates, which are no text
            return text
        except Exception:  # noqa: BLE001 - any codec failure moves down the chain
            if name == codec and codec not in ("utf-8", "ascii") and notes is not None:
                notes.append(f"body not valid {charset!r}, decoded by fallback")
    return data.decode("cp1252", errors="replace")


# Encoded text may not hold spaces, but some mailers put them there (zammad-mail050).
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\r\n]*?)\?=")
_EW = r"=\?[^?\s]+\?[bBqQ]\?[^?\r\n]*?\?="
_ENCODED_RUN = re.compile(rf"{_EW}(?:[ \t\r\n]*{_EW})*")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _decode_run(run: str) -> str:
    """Decode adjacent encoded words, joining same-charset bytes split mid-character."""
    pieces: list[tuple[str, bytes]] = []
    for charset, encoding, payload in _ENCODED_WORD.findall(run):
        charset = charset.split("*", 1)[0].lower()
        try:
            if encoding in "bB":
                data = base64.b64decode(payload + "=" * (-len(payload) % 4))
            else:
                data = quopri.decodestring(payload.encode("ascii", "replace"), header=True)
        except Exception:  # noqa: BLE001 - a broken word stays as written
            return run
        if pieces and pieces[-1][0] == charset:
            data = pieces.pop()[1] + data
        pieces.append((charset, data))
    return "".join(decode_bytes(data, charset) for charset, data in pieces)


def _unfolded(value: object) -> str:
    # compat32 keeps 8-bit header bytes as surrogate escapes; re-decode them with the chain.
    raw = str(value).encode("utf-8", "surrogateescape")
    text = raw.decode("ascii") if raw.isascii() else decode_bytes(raw)
    return _FOLD.sub("", text).replace("\r", "").replace("\n", " ")


def decode_header_text(value: object) -> str:
    """Decode one raw header value: 8-bit bytes via the charset chain, then RFC 2047 words."""
    return _ENCODED_RUN.sub(lambda m: _decode_run(m.group(0)), _unfolded(value))


def _collapse(text: str) -> str:
    return " ".join(text.split())


_QUOTED_STRING_ESCAPES = str.maketrans({c: "\\" + c for c in '"()\\'})


def _quotable(run: re.Match[str]) -> str:
    return _decode_run(run.group(0)).translate(_QUOTED_STRING_ESCAPES)


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
                inner = _ENCODED_RUN.sub(_quotable, inner)
            out.append(opener + inner + tail)
            i = j + 1
        elif match := _ENCODED_RUN.match(text, i):
            out.append(f'"{_quotable(match)}"')
            i = match.end()
        else:
            out.append(opener)
            i += 1
    return "".join(out)


def _addresses(values: Iterable[object], notes: list[str]) -> tuple[Address, ...]:
    found: dict[str, Address] = {}
    for value in values:
        text = _prequote(_unfolded(value))
        try:
            pairs = get_addresses(text, decode_names=True)
        except Exception as exc:  # noqa: BLE001 - mail-parser raises more than its own errors
            notes.append(f"address header fell back to email.utils: {type(exc).__name__}: {exc}")
            pairs = email.utils.getaddresses([text])
        for name, addr in pairs:
            addr = addr.strip().lower()
            if not addr or any(c.isspace() or c in "<>" for c in addr):
                continue  # no usable mailbox; a display name is never promoted to one
            name = capped(_collapse(name), NAME_BYTES)
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


_EXTENSIONS = {"message/rfc822": ".eml", "message/delivery-status": ".txt", "text/rfc822-headers": ".txt"}


class _Body:
    """Walk the MIME tree once: pick the body parts, collect the attachments."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.plain: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []

    def visit(self, part: Message, in_attachment: bool = False, parent: str = "") -> None:
        disposition = part.get_content_disposition() or ""
        # Only a multipart payload is read undecoded: get_payload() on text applies the charset.
        if part.get_content_maintype() != "message" and part.is_multipart():
            in_attachment = in_attachment or disposition == "attachment"
            for child in part.get_payload():
                if isinstance(child, Message):
                    self.visit(child, in_attachment, part.get_content_subtype())
            return
        leaf = partial(self._leaf, part, disposition, in_attachment, parent)
        _attempt(self.notes, f"a {part.get_content_type()} part", leaf, None)

    def _leaf(self, part: Message, disposition: str, in_attachment: bool, parent: str) -> None:
        ctype, filename = part.get_content_type(), _filename(part)
        if ctype.startswith("multipart/"):  # boundary never found: readers show it as text
            ctype = "text/plain"
        bodylike = not (in_attachment or filename or disposition == "attachment")
        if bodylike and ctype == "text/plain":
            text = self._text(part)
            if not (self.plain or "").strip():
                self.plain = text
            elif parent != "alternative":  # e.g. Apple Mail's text, image, text
                self.plain = f"{self.plain}\n{text}"
        elif bodylike and ctype == "text/html":
            self.html = self._text(part) if self.html is None else self.html
        else:
            generated = f"attachment-{len(self.attachments) + 1}"
            extension = _EXTENSIONS.get(ctype) or mimetypes.guess_extension(ctype) or ".bin"
            self.attachments.append(Attachment(filename or generated + extension, ctype, _content(part)))

    def _text(self, part: Message) -> str:
        data = part.get_payload(decode=True)
        charset = _attempt(self.notes, "charset", part.get_content_charset, None)
        text = decode_bytes(data if isinstance(data, bytes) else b"", charset, self.notes)
        return text.replace("\r\n", "\n").replace("\r", "\n")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001 - a malformed RFC 2231 parameter means no name
        return ""
    name = decode_header_text(name).replace("\\", "/").rsplit("/", 1)[-1]
    return _collapse("".join(c for c in name if c.isprintable()))


def _content(part: Message) -> bytes:
    if part.is_multipart():  # message/rfc822 and message/delivery-status hold parsed blocks
        chunks = []
        for block in part.get_payload():
            try:
                if isinstance(block, Message):
                    chunks.append(block.as_bytes(policy=email.policy.compat32))
            except Exception:  # noqa: BLE001 - keep what can be serialised
                chunks.append(str(block).encode("utf-8", "surrogateescape"))
        return b"".join(chunks)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _attempt(notes: list[str], what: str, step: Callable[[], T], default: T) -> T:
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - one bad field must not lose the others
        notes.append(f"could not read {what}: {type(exc).__name__}: {exc}")
        return default


def _message(raw: bytes, notes: list[str]) -> Message:
    try:
        parsed = mailparser.parse_from_bytes(raw)
        for entry in parsed.defects:  # a list of {part or header kind: [descriptions]}
            notes.extend(f"{kind}: {item}" for kind, items in entry.items() for item in items)
        message: Message = parsed.message
        return message
    except Exception as exc:  # noqa: BLE001 - HeaderParseError, ValueError, TypeError, AttributeError...
        notes.append(f"fell back to email.message_from_bytes: {type(exc).__name__}: {exc}")
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        notes.extend(f"{part.get_content_type()}: {type(d).__name__}" for d in part.defects)
    return message


_LEADING_BLANK_LINES = re.compile(rb"(?:[ \t]*\r?\n)+(?=[!-9;-~]+:)")


def _build(raw: bytes) -> IncomingMail:
    notes: list[str] = []
    if match := _LEADING_BLANK_LINES.match(raw):
        raw = raw[match.end() :]
        notes.append("removed blank lines before the header")
    message = _message(raw, notes)
    items: list[tuple[str, str]] = _attempt(
        notes, "headers", lambda: [(name.lower(), value) for name, value in message.raw_items()], []
    )
    headers: dict[str, list[str]] = {}
    for name, value in items:
        headers.setdefault(name, []).append(_attempt(notes, name, lambda: decode_header_text(value), ""))

    def addresses(name: str) -> tuple[Address, ...]:
        values = [v for n, v in items if n == name]
        return _attempt(notes, name, lambda: _addresses(values, notes), ())

    senders = addresses("from")
    body = _Body(notes)
    _attempt(notes, "body", lambda: body.visit(message), None)
    text = body.plain or ""
    if not text.strip() and body.html:
        text = _attempt(notes, "html body", lambda: html_to_text(body.html or ""), "")
    message_ids = _message_ids(headers.get("message-id", [])[:1])
    return IncomingMail(
        from_=senders[0] if senders else None,
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=addresses("reply-to"),
        subject=capped(_collapse(headers.get("subject", [""])[0]), SUBJECT_BYTES),
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(headers.get("in-reply-to", [])),
        references=_message_ids(headers.get("references", [])),
        date=_date(headers.get("date", [""])[0]),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
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
        text = decode_bytes(data).replace("\r\n", "\n").replace("\r", "\n")
        return IncomingMail(
            from_=None, to=(), cc=(), reply_to=(), subject="", message_id=None, in_reply_to=(),
            references=(), date=None, text=text, html=None, attachments=(),
            headers=MappingProxyType({}),
            defects=(f"unparseable, kept as raw text: {type(exc).__name__}: {exc}",),
        )
