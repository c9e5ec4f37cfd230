"""Tests for mailticketd.mail.parse: raw bytes become an IncomingMail, whatever the bytes."""

from __future__ import annotations

import base64
import email
import email.utils
import json
import os
import re
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import mailparser
import pytest

from mailticketd.mail import parse
from mailticketd.mail.parse import Address, IncomingMail, parse_mail
from mailticketd.mail.reply import visible_text


def corpus_dir() -> Path:
    """The shared mail corpus, or the folder named by MAILTICKETD_CORPUS."""
    override = os.environ.get("MAILTICKETD_CORPUS")
    return Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail"


CORPUS = corpus_dir()
CORPUS_FILES = sorted(CORPUS.glob("*.eml")) + sorted(CORPUS.glob("*.body.txt")) if CORPUS.is_dir() else []

# Keys of *.expected.json this module checks against the parsed mail.
CHECKED_KEYS = (
    "subject", "from", "from_email", "to", "cc", "body_contains", "visible_body", "in_reply_to", "references",
    "references_raw", "attachment_filenames_contains", "in_reply_to_first",
)

# Expectations we knowingly do not share; each has its own test below saying why.
DIFFERENCES = {
    ("zammad-mail007", "body_contains"),
    ("zammad-mail026", "body_contains"),
    ("zammad-mail071", "from"),
    ("zammad-mail071", "from_email"),
    ("zammad-mail076", "from"),
    ("zammad-mail076", "from_email"),
}


def _expectations() -> list[Any]:
    cases = []
    for path in sorted(CORPUS.glob("*.expected.json")) if CORPUS.is_dir() else []:
        stem = path.name[: -len(".expected.json")]
        if not (CORPUS / f"{stem}.eml").exists():
            continue  # the other project's expectation has no mail to check it on
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            if key in CHECKED_KEYS and (stem, key) not in DIFFERENCES:
                cases.append(pytest.param(stem, key, value, id=f"{stem}-{key}"))
    return cases


def corpus_mail(stem: str) -> IncomingMail:
    return parse_mail((CORPUS / f"{stem}.eml").read_bytes())


def _addresses_in(header: str) -> list[str]:
    """Address parts of an expectation like 'Max Kohl | [example.com] <kohl@example.com>'."""
    bracketed = re.findall(r"<([^<>]+)>", header)
    found = bracketed or [address for _, address in email.utils.getaddresses([header])]
    return [address.strip().lower() for address in found if address.strip()]


def _check(mail: IncomingMail, key: str, expected: Any) -> None:
    if key == "subject":  # IncomingMail.subject is whitespace-collapsed by contract
        assert mail.subject == " ".join(expected.split())
    elif key in ("from", "from_email"):
        assert mail.from_ is not None and mail.from_.address == _addresses_in(expected)[0]
    elif key in ("to", "cc"):
        assert [a.address for a in getattr(mail, key)] == _addresses_in(expected)
    elif key == "body_contains":
        assert expected in mail.text
    elif key == "visible_body":
        assert visible_text(mail.text).strip() == expected
    elif key == "in_reply_to":
        assert mail.in_reply_to == (() if expected is None else tuple(expected) if isinstance(expected, list) else (expected,))
    elif key == "references":
        assert mail.references == tuple(expected)
    elif key == "references_raw":
        assert mail.header("references") == expected
        assert mail.references == tuple(re.findall(r"<([^<>]+)>", expected))
    elif key == "attachment_filenames_contains":
        assert set(expected) <= {a.name for a in mail.attachments}
    elif key == "in_reply_to_first":
        assert mail.in_reply_to[0] == expected


def test_corpus_is_present() -> None:
    """The shared corpus is where the tests look for it, so the corpus tests below are not vacuous."""
    assert any(CORPUS.glob("*.eml")), f"no corpus at {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_parses(path: Path) -> None:
    """Every corpus file parses into an IncomingMail with plain-text fields, without raising."""
    mail = parse_mail(path.read_bytes())
    assert isinstance(mail, IncomingMail)
    assert "\r" not in mail.text
    assert all(isinstance(values, tuple) for values in mail.headers.values())
    assert mail.from_ is None or mail.from_.address == mail.from_.address.strip().lower()


@pytest.mark.parametrize("stem,key,expected", _expectations())
def test_corpus_expectation(stem: str, key: str, expected: Any) -> None:
    """A corpus expectation (subject compared whitespace-collapsed, addresses by addr-spec) holds for our parse."""
    _check(corpus_mail(stem), key, expected)


def test_zammad_html_body_snippet_is_in_html_not_text() -> None:
    """Zammad's body is the HTML source ('Hallo.<br>Jetzt…'); ours keeps it in .html and renders .text as lines."""
    mail = corpus_mail("zammad-mail007")
    assert "Hallo.<br>Jetzt muss ich dir noch kurzfristig absagen für morgen." in (mail.html or "")
    assert "Hallo.\nJetzt muss ich dir noch kurzfristig absagen für morgen." in mail.text


def test_zammad_prefers_html_where_we_take_the_plain_part() -> None:
    """Zammad's body for zammad-mail026 is its sanitised HTML (attributes dropped); we keep the HTML as sent in .html and take the text/plain part as .text."""
    mail = corpus_mail("zammad-mail026")
    assert re.search(r'<table cellpadding="0" cellspacing="0" [^>]*bgcolor="#d9e7f0"', mail.html or "")
    assert "<table" not in mail.text and "Service" in mail.text


@pytest.mark.parametrize("stem", ["zammad-mail071", "zammad-mail076"])
def test_unusable_sender_address_is_no_sender(stem: str) -> None:
    """Zammad takes 'power quadrant system@…' and '"Millions…"@example.com>' as senders; no reply can reach them, so we report none and a defect."""
    mail = corpus_mail(stem)
    assert mail.from_ is None
    assert any("from" in defect for defect in mail.defects)


def test_iso_8859_2_body_is_decoded_and_crlf_normalised() -> None:
    """GitLab's untrimmed body ends in CRLF; we decode iso-8859-2 the same and normalise line ends to LF."""
    assert corpus_mail("gitlab-service_desk_encoding").text == "Body of encoding iso-8859-2 test: ťžščľžťťč\n\n"


def mail(headers: str, body: bytes = b"Text\n", extra: bytes = b"") -> IncomingMail:
    return parse_mail(headers.encode("ascii") + extra + b"\n\n" + body)


def test_rfc2047_latin1_subject() -> None:
    """An RFC 2047 ISO-8859-1 subject is decoded to 'Grüße aus Köln'."""
    assert mail("Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=").subject == "Grüße aus Köln"


def test_raw_8bit_latin1_subject() -> None:
    """A raw 8-bit Latin-1 subject keeps its umlauts (mail-parser alone gives 'Gre aus Kln')."""
    assert parse_mail(b"Subject: Gr\xfc\xdfe aus K\xf6ln\n\nx").subject == "Grüße aus Köln"


def test_raw_8bit_utf8_subject_and_folding() -> None:
    """A raw UTF-8 subject folded over two lines is decoded and whitespace-collapsed."""
    assert parse_mail("Subject: Störung\n  auf   Server\n\nx".encode()).subject == "Störung auf Server"


def test_iso_8859_1_body_with_windows_1252_bytes() -> None:
    """A body labelled iso-8859-1 that holds windows-1252 bytes decodes € „ “ instead of control characters."""
    raw = b"Content-Type: text/plain; charset=iso-8859-1\n\nPreis 5 \x80, \x84Zitat\x93\r\n"
    assert parse_mail(raw).text == "Preis 5 €, „Zitat“\n"


def test_undeclared_body_tries_utf8_then_cp1252() -> None:
    """Without a charset, UTF-8 bytes decode as UTF-8 and Latin-1 bytes as cp1252."""
    assert parse_mail("\nGrüße".encode()).text == "Grüße"
    assert parse_mail(b"\nGr\xfc\xdfe").text == "Grüße"


def test_unknown_charset_falls_back_and_is_noted() -> None:
    """An unknown charset name falls back along the chain and leaves a defect."""
    result = parse_mail("Content-Type: text/plain; charset=x-klingon\n\nGrüße".encode())
    assert result.text == "Grüße"
    assert any("x-klingon" in defect for defect in result.defects)


@pytest.mark.parametrize(
    "header",
    [b'From: "M\xc3\xbcller, Hans" <HANS@Example.DE>', b"From: =?iso-8859-1?Q?M=FCller=2C_Hans?= <HANS@Example.DE>",
     b'From: "M\xfcller, Hans" <HANS@Example.DE>'],
    ids=["utf8", "rfc2047-comma-encoded", "latin1-8bit"],
)
def test_display_name_with_comma(header: bytes) -> None:
    """'"Müller, Hans" <HANS@Example.DE>' in any encoding is one address hans@example.de named 'Müller, Hans'."""
    result = parse_mail(header + b"\n\nx")
    assert result.from_ == Address("hans@example.de", "Müller, Hans")


@pytest.mark.parametrize("header", ['"chef@example.de" <angreifer@example.net>', "chef@example.de <angreifer@example.net>"])
def test_display_name_that_looks_like_an_address(header: str) -> None:
    """A display name shaped like an address stays the name; the angle address is the address."""
    assert mail(f"From: {header}").from_ == Address("angreifer@example.net", "chef@example.de")


def test_from_is_first_address_and_never_reply_to() -> None:
    """from_ is the first From address; Reply-To is reported separately and never used as sender."""
    result = mail("From: a@example.de, b@example.de\nReply-To: Other <other@example.de>")
    assert result.from_ == Address("a@example.de", "")
    assert result.reply_to == (Address("other@example.de", "Other"),)


def test_recipients_lower_cased_and_deduplicated() -> None:
    """To and Cc hold addr-specs only, lower-cased, each once, in header order."""
    result = mail("To: Anna <ANNA@example.de>, anna@example.de, bob@example.de\nCc: =?utf-8?q?J=C3=B6rg?= <j@x.de>")
    assert [a.address for a in result.to] == ["anna@example.de", "bob@example.de"]
    assert result.cc == (Address("j@x.de", "Jörg"),)


def test_message_ids_without_brackets_in_order() -> None:
    """Message-ID, In-Reply-To and References lose their angle brackets and keep header order."""
    result = mail(
        "Message-ID:  <abc@mx.example.de> \nIn-Reply-To: <one@x> <two@x>\n"
        'References: "<r1@x>,<r2@x>"\nReferences: <r3@x>'
    )
    assert result.message_id == "abc@mx.example.de"
    assert result.in_reply_to == ("one@x", "two@x")
    assert result.references == ("r1@x", "r2@x", "r3@x")


def test_missing_and_empty_message_id_is_none() -> None:
    """A missing or empty Message-ID is None, and absent threading headers are empty tuples."""
    assert mail("Subject: x").message_id is None
    assert mail("Message-ID: ").message_id is None
    assert mail("Subject: x").in_reply_to == () == mail("Subject: x").references


def test_date_is_timezone_aware_or_none() -> None:
    """A valid Date is tz-aware, one without zone is taken as UTC, an invalid or missing one is None."""
    zoned, unzoned = mail("Date: Mon, 02 Feb 2026 10:00:00 +0100").date, mail("Date: Mon, 02 Feb 2026 10:00:00 -0000").date
    assert zoned is not None and zoned.utcoffset() == timedelta(hours=1)
    assert unzoned is not None and unzoned.tzinfo == timezone.utc
    assert mail("Date: gestern").date is None
    assert mail("Subject: x").date is None


def test_headers_mapping_is_read_only_decoded_and_case_insensitive() -> None:
    """Every header is kept lower-cased with its decoded values in order, read-only, and header() ignores case."""
    result = mail("X-Tag: =?utf-8?q?gr=C3=BCn?=\nX-Tag: blau\nSubject: s")
    assert result.headers["x-tag"] == ("grün", "blau")
    assert result.header("X-TAG") == "grün" and result.header("x-missing") is None
    with pytest.raises(TypeError):
        result.headers["x-new"] = ("v",)  # type: ignore[index]


FORWARD = b"""From: kunde@example.de
Subject: Fwd: Rechnung
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain; charset=utf-8

Siehe unten.
--B
Content-Type: message/rfc822

From: alt@example.de
Subject: Rechnung

geheimer weitergeleiteter Text
--B--
"""


def test_forwarded_message_is_attachment_not_text() -> None:
    """An attached message/rfc822 becomes an .eml attachment and its text stays out of .text."""
    result = parse_mail(FORWARD)
    assert result.text == "Siehe unten."
    assert [(a.name, a.content_type) for a in result.attachments] == [("attachment-1.eml", "message/rfc822")]
    assert b"geheimer weitergeleiteter Text" in result.attachments[0].content


ALTERNATIVE_WITH_IMAGE = b"""From: kunde@example.de
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Der Server h=C3=A4ngt.
--A
Content-Type: text/html; charset=utf-8

<p>Der Server <b>h&auml;ngt</b>.</p>
--A--
--M
Content-Type: image/png; name="bild.png"
Content-Disposition: inline; filename="bild.png"
Content-Transfer-Encoding: base64

iVBORw0K
--M
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=UTF-8''Pr%C3%BCfbericht.pdf
Content-Transfer-Encoding: base64

JVBERi0=
--M--
"""


def test_body_parts_and_attachments_are_separated() -> None:
    """The text/plain and text/html body parts are chosen; an inline named image and an RFC 2231 file are attachments."""
    result = parse_mail(ALTERNATIVE_WITH_IMAGE)
    assert result.text == "Der Server hängt."
    assert result.html == "<p>Der Server <b>h&auml;ngt</b>.</p>"
    names = [(a.name, a.content_type, a.content) for a in result.attachments]
    assert names == [("bild.png", "image/png", b"\x89PNG\r\n"), ("Prüfbericht.pdf", "application/octet-stream", b"%PDF-")]
    assert result.attachments[1].size == 5 and len(result.attachments[1].sha256) == 64


SPLIT_BY_IMAGE = b"""Content-Type: multipart/mixed; boundary="S"

--S
Content-Type: text/plain; charset=utf-8

Fehlermeldung:
--S
Content-Type: image/png
Content-Disposition: inline; filename="screenshot.png"
Content-Transfer-Encoding: base64

iVBORw0K
--S
Content-Type: text/plain; charset=utf-8

Sie kommt beim Login.
--S--
"""


def test_text_split_around_inline_image_is_joined() -> None:
    """Apple Mail's text, image, text keeps both text parts in .text and the image as attachment."""
    result = parse_mail(SPLIT_BY_IMAGE)
    assert result.text == "Fehlermeldung:\nSie kommt beim Login."
    assert [a.name for a in result.attachments] == ["screenshot.png"]


def test_blank_plain_part_falls_back_to_html() -> None:
    """An empty text/plain alternative does not hide the HTML part's text."""
    raw = (
        b'Content-Type: multipart/alternative; boundary="A"\n\n--A\nContent-Type: text/plain\n\n \n'
        b"--A\nContent-Type: text/html\n\n<div>Inhalt</div>\n--A--\n"
    )
    assert parse_mail(raw).text == "Inhalt"


def test_html_only_mail_text_is_converted() -> None:
    """A mail with only an HTML body gets its text from the HTML renderer."""
    result = parse_mail(b"Content-Type: text/html; charset=utf-8\n\n<p>Gr&uuml;&szlig;e</p><p>Hans</p>")
    assert result.text == "Grüße\nHans"


def test_unnamed_attachment_gets_generated_name() -> None:
    """An attachment without a filename is named like 'attachment-1.txt' after its type."""
    raw = b'Content-Type: multipart/mixed; boundary="B"\n\n--B\n\nbody\n--B\nContent-Disposition: attachment\n\ndata\n--B--\n'
    result = parse_mail(raw)
    assert result.text == "body"
    assert [a.name for a in result.attachments] == ["attachment-1.txt"]


def test_blank_lines_before_header_are_tolerated() -> None:
    """Blank lines before the first header (as in the GitLab fixtures) do not turn the header into body."""
    result = parse_mail(b"\n\nSubject: Hallo\nFrom: a@example.de\n\nText")
    assert (result.subject, result.text) == ("Hallo", "Text")


@pytest.mark.parametrize(
    "raw",
    [
        b"From:=?8?B?HwGVy?=<>\n\nbody",
        b"Content-Type: multipart/;boundary=\n\n--\n",
        b"Content-Type: multipart/mixed;boundary=\nContent-Type: multipart/;boundary=\n\n--\nContent-Type: multipart/;boundary=\n\n",
        b'Content-Type: text/plain; charset="utf\x00-8"\n\nhi \xc3\xbc',
        b"", b"\x00\xff\xfe", b"no header at all", b"Subject: =?utf-8?b?####?=\n\n",
    ],
    ids=["bad-b-word-in-from", "empty-boundary", "boundary-chain", "nul-in-charset", "empty", "binary", "no-header", "bad-base64"],
)
def test_fuzz_inputs_do_not_raise(raw: bytes) -> None:
    """The inputs that make mail-parser raise, and other junk, still give an IncomingMail."""
    assert isinstance(parse_mail(raw), IncomingMail)


def test_mail_parser_failure_falls_back_and_says_so() -> None:
    """When mail-parser raises on a damaged mail (here a multipart without its boundary), the stdlib parse is used
    and a defect records the fallback."""
    result = parse_mail(b"From:=?8?B?HwGVy?=<>\nSubject: weiter\nMIME-Version: 1.0\n"
                        b"Content-Type: multipart/mixed; boundary=x\n\nbody")
    assert (result.subject, result.text) == ("weiter", "body")
    assert result.defects[0].startswith("fell back to email.message_from_bytes: HeaderParseError")


@pytest.mark.parametrize("path", [path for path in CORPUS_FILES if path.suffix == ".eml"], ids=lambda path: path.stem)
def test_every_corpus_mail_reads_the_same_without_mail_parsers_second_reading(path: Path) -> None:
    """mail-parser reads a mail again only when the standard library found its tree damaged: sender, recipients,
    subject, text, attachments and headers come out the same as when it reads every mail (its notes aside)."""
    raw = path.read_bytes()
    if match := parse._LEADING_BLANK_LINES.match(raw):
        raw = raw[match.end():]
    tree, again = email.message_from_bytes(raw), email.message_from_bytes(raw)
    found = list(mailparser.MailParser(again).attachments) if parse._sound(tree) else []
    assert replace(parse._reading(tree, [], []), defects=()) == replace(parse._reading(again, found, []), defects=())


def test_the_attachments_inside_a_forwarded_mail_are_kept() -> None:
    """A mail forwarded as an attachment keeps the files inside it as the ticket's attachments (mail-parser reads
    any mail with an attached mail a second time)."""
    pdf = base64.b64encode(b"%PDF-1.4 Rechnung").decode()
    raw = ("From: kunde@customer.example\r\nSubject: WG: Rechnung\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\n"
           "Siehe Anhang.\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: lieferant@example.org\r\n"
           "Subject: Rechnung\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n"
           "--inner\r\nContent-Type: text/plain\r\n\r\nAnbei.\r\n--inner\r\nContent-Type: application/pdf\r\n"
           "Content-Disposition: attachment; filename=rechnung.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           f"{pdf}\r\n--inner--\r\n--outer--\r\n").encode()
    names = [attachment.name for attachment in parse_mail(raw).attachments]
    assert "rechnung.pdf" in names, names


def test_a_sound_mail_reads_alike_without_mail_parsers_second_reading() -> None:
    """mail-parser reads only a damaged tree again: a sound mail (no part with a defect) gives the same reading,
    and a sender it cannot use is still reported, by our own reading of the address."""
    result = parse_mail(b"From:=?8?B?HwGVy?=<>\nSubject: weiter\n\nbody")
    assert (result.from_, result.subject, result.text) == (None, "weiter", "body")
    assert result.defects == ("from: invalid-angle-address",)


def test_nul_in_charset_keeps_the_body() -> None:
    """A NUL in the charset name falls back to UTF-8 instead of losing the body."""
    assert parse_mail(b'Content-Type: text/plain; charset="utf\x00-8"\n\nhi \xc3\xbc').text == "hi ü"


def test_unparseable_mail_keeps_raw_text() -> None:
    """A mail even the stdlib parser cannot read (nesting deeper than recursion allows) is kept as raw text with a defect."""
    levels = 3000
    raw = b"Subject: tief\nContent-Type: multipart/mixed; boundary=b0\n\n" + b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(levels)
    )
    result = parse_mail(raw)
    assert result.text.startswith("Subject: tief\n")
    assert result.defects and result.defects[0].startswith("unparseable, kept as raw text")
