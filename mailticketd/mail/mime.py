"""Walk a parsed MIME tree: pick the body parts, collect the attachments, lose none of them."""

from __future__ import annotations

import base64
import binascii
import email.policy
import hashlib
import mimetypes
import quopri
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from functools import partial
from typing import Any, TypeVar

from mailticketd.mail.charsets import collapse, decode_bytes, decode_header_text, unfolded

T = TypeVar("T")


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


def attempt(notes: list[str], what: str, step: Callable[[], T], default: T) -> T:
    """Run one reading step; on any error note it and go on with ``default``."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - one bad field must not lose the others
        notes.append(f"could not read {what}: {type(exc).__name__}: {exc}")
        return default


class DecodingMessage(Message):
    """A part of a big mail that keeps its body as bytes, never as the parser's list of lines and their string.

    While the parser reads the part's body it hands each line to ``take``: a base64 attachment's text, or a
    text part's bytes as the parser read them, go into one ``bytearray`` (the parser keeps a one-character line
    instead).  Once the part ends ``set_payload`` decodes the base64 and keeps only the bytes; a text part's
    bytes wait for ``take_body``.  A base64 line that is not ASCII ends the taking: that part is then read as
    the standard library reads it.
    """

    decoded: bytes | None = None
    _taken: bytearray | None = None
    _kind = ""  # "" undecided, "base64", "text", or "no"
    _markers = 0  # lines the parser holds as a newline in place of a taken one
    _body: bytearray | None = None

    def take(self, line: str) -> bool:
        """Keep ``line`` of the body; False when this part or line is not one to take."""
        if self._kind == "no" or len(self) == 0:  # no headers yet: the parser is still reading them
            return False
        if not self._kind:
            self._kind = self._decide()
            if self._kind == "no":
                return False
            self._taken = bytearray()
        assert self._taken is not None
        if self._kind == "base64":
            if not line.isascii():
                self._kind = "no"
                return False
            self._taken += line.encode("ascii")
        else:
            self._taken += line.encode("ascii", "surrogateescape")  # the bytes the parser decoded so
        self._markers += 1
        return True

    def undecided(self) -> bool:
        """Headers read, first body line not yet offered."""
        return not self._kind and len(self) > 0

    def refuse(self) -> None:
        """Take nothing of this part (it belongs to an attached mail, which is stored as the parser holds it)."""
        self._kind = "no"

    def _decide(self) -> str:
        maintype = self.get_content_maintype()
        encoding = str(self.get("content-transfer-encoding", "")).strip().lower()
        if self.is_multipart() or maintype in ("multipart", "message"):
            return "no"
        if maintype != "text" and encoding == "base64":
            return "base64"
        return "text" if maintype == "text" and encoding in _PLAIN_ENCODINGS else "no"

    def set_payload(self, payload: Any, charset: Any = None) -> None:
        taken, self._taken = self._taken, None
        if taken is not None and isinstance(payload, str):
            if self._kind == "no":  # taking stopped half-way: the taken lines first, then the parser's
                payload = taken.decode("ascii", "surrogateescape") + payload[self._markers:]
            elif self._kind == "text":
                self._body = taken  # kept as it is: a copy of a pasted 20 MB log beside it was the parse's peak
                payload = "\n"  # one newline: the multipart parser takes it off when the part ends at a boundary
            else:
                try:
                    self.decoded = binascii.a2b_base64(taken)
                    payload = ""
                except binascii.Error:
                    payload = taken.decode("ascii")  # broken padding and the like: the lenient decoder (_content)
        super().set_payload(payload, charset)

    def take_body(self) -> bytes | bytearray | None:
        """A text part's transfer-decoded bytes, as ``get_payload(decode=True)`` gives them, read once: from the
        taken bytes, or from a big text with the text dropped first.  None for other parts and small texts."""
        encoding = str(self.get("content-transfer-encoding", "")).strip().lower()
        payload: object = getattr(self, "_payload", None)
        data: bytes | bytearray
        if self._body is not None:
            data, self._body = self._body, None
            if payload == "":  # the parser took the line end before the boundary off the part
                del data[len(data) - _line_end(data):]
        elif isinstance(payload, str) and len(payload) >= _BIG_TEXT and encoding in _PLAIN_ENCODINGS:
            try:
                data = payload.encode("ascii", "surrogateescape")  # the bytes the parser read (it decoded them so)
            except UnicodeEncodeError:
                return None
            del payload
        else:
            return None
        self._payload = ""
        return _qp_decoded(data) if encoding == "quoted-printable" else bytes(data)


def _qp_decoded(data: bytes | bytearray) -> bytearray:
    """``binascii.a2b_qp(data)``, a piece at a time: whole, it held a buffer of the input's size besides the input
    and its result (a third copy of a pasted log).  Each piece ends after a line feed, and a2b_qp looks past a line
    feed for nothing (an escape, a soft line break, a skipped run end before it): the pieces read as the whole."""
    decoded = bytearray()
    with memoryview(data) as view:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start + _QP_PIECE)
            end = len(data) if end < 0 else end + 1
            decoded += binascii.a2b_qp(view[start:end])
            start = end
    return decoded


_QP_PIECE = 1 << 20


def _line_end(data: bytearray) -> int:
    """How many bytes the line end at the end of ``data`` has (CRLF, CR or LF), 0 without one."""
    if data.endswith(b"\r\n"):
        return 2
    return 1 if data.endswith((b"\r", b"\n")) else 0


# A text part this long is decoded by take_body; the transfer encodings it decodes as the standard library does.
_BIG_TEXT = 1 << 20
_PLAIN_ENCODINGS = frozenset({"quoted-printable", "7bit", "8bit", "binary", ""})
# Parts of these types are read as the standard library reads them (the body's text among them).
_TEXTUAL = frozenset({"text", "multipart", "message"})


_EXTENSIONS = {"message/rfc822": ".eml", "message/delivery-status": ".txt", "text/rfc822-headers": ".txt"}


class Body:
    """Walk the MIME tree once: pick the body parts, collect the attachments."""

    def __init__(self, notes: list[str], hint: str | None = None) -> None:
        self.notes = notes
        self.hint = hint  # the charset the body declares, for raw 8-bit file names
        self.plain: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []
        self.dropped: list[str] = []  # names of empty attachments, which are not kept

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
        attempt(self.notes, f"a {part.get_content_type()} part", leaf, None)

    def _leaf(self, part: Message, disposition: str, in_attachment: bool, parent: str) -> None:
        ctype, filename = part.get_content_type(), _filename(part, self.hint)
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
            self.add(filename, ctype, _content(part))

    def add(self, filename: str, ctype: str, content: bytes) -> None:
        """Keep one attachment, named if it has no name; an empty one is only noted."""
        generated = f"attachment-{len(self.attachments) + len(self.dropped) + 1}"
        extension = _EXTENSIONS.get(ctype) or mimetypes.guess_extension(ctype) or ".bin"
        name = filename or generated + extension
        if content:
            self.attachments.append(Attachment(name, ctype, content))
        else:
            self.dropped.append(name)

    def add_missing(self, found: Iterable[Mapping[str, Any]]) -> None:
        """Add the attachments another reading of the mail (mail-parser's) found and this walk did not."""
        known = {item.sha256 for item in self.attachments}
        bodies = [text.strip() for text in (self.plain, self.html) if text and text.strip()]
        for entry in found:
            content = _library_content(entry)
            if not content or hashlib.sha256(content).hexdigest() in known:
                continue
            if any(content.decode("utf-8", "replace").strip() in body for body in bodies):
                continue  # a body part the library calls an attachment
            ctype = str(entry.get("mail_content_type") or "application/octet-stream").lower()
            name = collapse("".join(c for c in str(entry.get("filename") or "") if c.isprintable()))
            self.add(name.replace("\\", "/").rsplit("/", 1)[-1], ctype, content)
            known.add(hashlib.sha256(content).hexdigest())
            self.notes.append(f"attachment {name!r} found only by mail-parser's reading, kept")

    def _text(self, part: Message) -> str:
        data: object = part.take_body() if isinstance(part, DecodingMessage) else None
        if data is None:
            data = part.get_payload(decode=True)
        charset = attempt(self.notes, "charset", part.get_content_charset, None)
        text = decode_bytes(data if isinstance(data, (bytes, bytearray)) else b"", charset, self.notes)
        del data  # a pasted log's bytes go before its line ends are made into a second string
        return text.replace("\r\n", "\n").replace("\r", "\n")


def _library_content(entry: Mapping[str, Any]) -> bytes:
    payload = entry.get("payload")
    if not isinstance(payload, str) or not entry.get("binary"):
        return b""  # containers: our own walk reads those
    try:
        return base64.b64decode(payload)
    except (binascii.Error, ValueError):
        return b""


def _filename(part: Message, hint: str | None) -> str:
    try:
        raw = {name.lower(): value for name, value in reversed(list(part.raw_items()))}
        if any(not str(raw.get(name, "")).isascii() for name in ("content-disposition", "content-type")):
            # Raw 8-bit parameters: decode the header first, then let the library read the parameter.
            probe = Message()
            for name in ("content-disposition", "content-type"):
                if name in raw:
                    probe[name] = unfolded(raw[name], hint)
            part = probe
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001 - a malformed RFC 2231 parameter means no name
        return ""
    name = decode_header_text(name, hint).replace("\\", "/").rsplit("/", 1)[-1]
    return collapse("".join(c for c in name if c.isprintable()))


def _content(part: Message) -> bytes:
    if isinstance(part, DecodingMessage) and part.decoded is not None:
        return part.decoded
    if isinstance(part, DecodingMessage) and (body := part.take_body()) is not None:
        return bytes(body)
    if part.is_multipart():  # message/rfc822 and message/delivery-status hold parsed blocks
        chunks = []
        for block in part.get_payload():
            try:
                if isinstance(block, Message):
                    chunks.append(block.as_bytes(policy=email.policy.compat32))
            except Exception:  # noqa: BLE001 - keep what can be serialised
                chunks.append(str(block).encode("utf-8", "surrogateescape"))
        return _transfer_decoded(part, b"".join(chunks))
    payload = part.get_payload()
    if isinstance(payload, str) and len(payload) > _LARGE and payload.isascii() \
            and str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        # get_payload(decode=True) makes three copies of the text first; a2b_base64 reads the text itself.
        try:
            return binascii.a2b_base64(payload)
        except binascii.Error:
            pass  # broken padding and the like: the standard library's lenient decoder below
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# A base64 payload this large is decoded straight from its text (see _content).
_LARGE = 1 << 20


def _transfer_decoded(part: Message, data: bytes) -> bytes:
    """An attached mail sent base64 or quoted-printable (against RFC 2046) is stored as the mail itself."""
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            return base64.b64decode(data.strip())
        if encoding == "quoted-printable":
            return quopri.decodestring(data.lstrip(b"\r\n"))
    except (binascii.Error, ValueError):
        pass
    return data
