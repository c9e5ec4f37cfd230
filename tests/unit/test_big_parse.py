"""A big mail is parsed from its pieces, its parts' bodies kept as bytes: it reads exactly as the standard library
reads it."""

from __future__ import annotations

import email
import email.policy
import os
import random
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailticketd.mail.mime import Body
from mailticketd.mail.parse import parse_mail, parse_mail_chunks

CORPUS = Path("/work/shared/corpus")
TEXT = "Zeile mit Umlauten: Größe überschritten = 100 % \t \r\n" * 3000 + "Ende ohne Zeilenende"


def _pieces(raw: bytes, size: int):  # type: ignore[no-untyped-def]
    return lambda: [raw[start:start + size] for start in range(0, len(raw), size)]


@pytest.mark.parametrize("encoding", ["quoted-printable", "8bit", "base64", "7bit"])
@pytest.mark.parametrize("with_attachment", [False, True])
def test_a_text_body_reads_the_same_from_pieces(encoding: str, with_attachment: bool) -> None:
    """The body text of a mail read in pieces equals the standard library's reading, in every transfer encoding,
    alone or before an attachment's boundary."""
    message = EmailMessage()
    message["From"] = "kunde@customer.example"
    message["Subject"] = "Protokoll"
    message.set_content(TEXT if encoding != "7bit" else TEXT.encode("ascii", "replace").decode(), cte=encoding)
    if with_attachment:
        message.add_attachment(os.urandom(70_000), maintype="application", subtype="pdf", filename="a.pdf")
    raw = message.as_bytes()
    reference = Body([])
    reference.visit(email.message_from_bytes(raw, policy=email.policy.compat32))
    mail = parse_mail_chunks(_pieces(raw, 4096))
    assert mail.text == reference.plain
    assert [a.content for a in mail.attachments] == [a.content for a in reference.attachments]


def test_a_forwarded_mail_and_a_text_file_are_kept_byte_for_byte() -> None:
    """An attached mail (with its own text and PDF) and a text file come out of the pieces as from the whole."""
    inner = EmailMessage()
    inner["From"] = "x@y.example"
    inner["Subject"] = "Innen"
    inner.set_content("Innen: Größe\n" * 50, cte="quoted-printable")
    inner.add_attachment(os.urandom(5000), maintype="application", subtype="pdf", filename="i.pdf")
    outer = EmailMessage()
    outer["From"] = "kunde@customer.example"
    outer["Subject"] = "Fwd: Innen"
    outer.set_content("Außen\n" * 20, cte="8bit")
    outer.add_attachment(inner)
    outer.add_attachment(("Anhang äöü\r\n" * 300).encode("utf-8"), maintype="text", subtype="plain", filename="t.txt")
    raw = outer.as_bytes()
    whole, pieces = parse_mail(raw), parse_mail_chunks(_pieces(raw, 100))
    assert pieces.text == whole.text
    kept = {a.name: a.content for a in whole.attachments}
    assert {a.name: a.content for a in pieces.attachments} == {name: kept[name] for name in ("attachment-1.eml", "t.txt")}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus of real mails is not here")
def test_the_corpus_reads_the_same_from_pieces() -> None:
    """Every real-world mail of the corpus gives the same text, HTML, subject and attachments read in pieces as
    read whole."""
    differing = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md"):
        raw = path.read_bytes()
        whole, pieces = parse_mail(raw), parse_mail_chunks(_pieces(raw, 1000))
        if (pieces.text, pieces.html, pieces.subject) != (whole.text, whole.html, whole.subject) or \
                sorted(a.sha256 for a in pieces.attachments) != sorted(a.sha256 for a in whole.attachments):
            differing.append(path.name)
    assert differing == []


@pytest.mark.parametrize("attached", [False, True])
def test_a_big_quoted_printable_body_with_every_kind_of_escape_reads_as_the_standard_library_reads_it(
        attached: bool) -> None:
    """A 3 MB quoted-printable text (decoded a megabyte at a time) with escapes, soft line breaks, stray equals
    signs and bare carriage returns at every place reads exactly as the standard library reads it, as the body
    and as an attached text file."""
    rng = random.Random(13)
    tokens = ["Gr=C3=B6=C3=9Fe", "=C3=BCberschritten", "=3D", "==", "=ZZ", "= ", "=\r", "\r", "=A", "Pr=C3=BCfung",
              "kernel:", "de-fr-srv-0815", "=\t"]
    ends = ["\r\n", "=\r\n", "\n", "=\n", "\r\n", "\r\n"]
    lines = []
    size = 0
    while size < 3_000_000:
        line = " ".join(rng.choice(tokens) for _ in range(rng.randrange(1, 12))) + rng.choice(ends)
        lines.append(line)
        size += len(line)
    body = "".join(lines).encode("ascii") + b"Ende="  # a trailing '=' without a line end
    disposition = b'Content-Disposition: attachment; filename="log.txt"\r\n' if attached else b""
    raw = (b"From: kunde@customer.example\r\nSubject: Protokoll\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n'
           b"\r\nHallo\r\n--b\r\n" + disposition + b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body + b"\r\n--b--\r\n")
    reference = Body([])
    reference.visit(email.message_from_bytes(raw, policy=email.policy.compat32))
    mail = parse_mail_chunks(_pieces(raw, 65536))
    assert len(mail.text) > 1_000_000 or attached
    assert mail.text == reference.plain
    assert [a.content for a in mail.attachments] == [a.content for a in reference.attachments]
