"""Real-world mail faults, one fixture per class (tests/fixtures/mail/*.eml with *.expected.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailticketd.mail.charsets import MAX_DETECTION_INPUT, decode_bytes
from mailticketd.mail.html import html_to_text
from mailticketd.mail.parse import parse_mail
from mailticketd.mail.reply import new_text, visible_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def _cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.expected.json")):
        stem = path.name[: -len(".expected.json")]
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            cases.append(pytest.param(stem, key, value, id=f"{stem}-{key}"))
    return cases


def test_every_fault_class_has_a_fixture() -> None:
    """Each class of issue 12 (and 9.10) has a fixture with its expected result."""
    stems = {path.name[: -len(".expected.json")] for path in FIXTURES.glob("*.expected.json")}
    for prefix in ("charset-", "header-raw-", "filename-raw-", "mime-reused-boundary", "rfc822-base64",
                   "html-gmail-", "html-apple-", "html-outlook-", "auto-reply-by-subject", "zero-length-",
                   "outlook-underscore-"):
        assert any(stem.startswith(prefix) for stem in stems), prefix
        assert all((FIXTURES / f"{stem}.eml").exists() for stem in stems)


@pytest.mark.parametrize(("stem", "key", "expected"), _cases())
def test_fixture_expectation(stem: str, key: str, expected: Any) -> None:
    """The parsed fixture shows what a reader of the mail in a good mail client sees."""
    mail = parse_mail((FIXTURES / f"{stem}.eml").read_bytes())
    if key == "subject":
        assert mail.subject == expected
    elif key == "from_name":
        assert mail.from_ is not None and mail.from_.name == expected
    elif key == "body_contains":
        for snippet in expected:
            assert snippet in mail.text
    elif key == "replacement_characters":
        assert mail.text.count("\ufffd") == expected
    elif key == "visible_body":
        assert visible_text(mail.text) == expected
    elif key == "new_text":
        assert new_text(mail.text) == expected
    elif key == "attachments":
        assert [item.name for item in mail.attachments] == expected
    elif key == "attachment_starts":
        contents = {item.name: item.content for item in mail.attachments}
        for name, start in expected.items():
            assert contents[name].startswith(start.encode())
    elif key == "dropped_attachments":
        assert list(mail.dropped_attachments) == expected
    else:
        raise AssertionError(f"unknown expectation {key!r}")


def test_a_few_bad_bytes_keep_the_declared_charset_and_say_so() -> None:
    """Three stray bytes in a long UTF-8 text are replaced one by one, and the parse notes it."""
    notes: list[str] = []
    text = decode_bytes("Überprüfung läuft. ".encode() * 20 + b"\xff\xfe\xc3", "utf-8", notes)
    assert text.count("Überprüfung läuft.") == 20 and text.count("\ufffd") == 3
    assert any("invalid byte" in note for note in notes)


def test_undeclared_mostly_utf8_text_keeps_its_characters() -> None:
    """Undeclared text that is UTF-8 but for one byte is read as UTF-8, not as cp1252 mojibake."""
    assert decode_bytes("Grüße, Jörg".encode() + b"\x81") == "Grüße, Jörg\ufffd"


def test_undeclared_cyrillic_is_detected_and_latin_text_stays_latin() -> None:
    """Detection reads undeclared windows-1251 text; German cp1252 text keeps the Latin guess."""
    russian = "Сервер не работает, помогите пожалуйста"
    assert decode_bytes(russian.encode("cp1251")) == russian
    german = "Sehr geehrte Damen und Herren, der Server läuft nicht. Grüße aus Köln"
    assert decode_bytes(german.encode("cp1252")) == german


def test_detection_sees_a_capped_sample_of_a_huge_body() -> None:
    """A 5 MB undeclared body is decoded whole though detection only reads the first bytes."""
    sentence = "Добрый день! Сервер не работает с утра, сайт недоступен. Помогите, пожалуйста. "
    data = sentence.encode("cp1251") * (5_000_000 // len(sentence))
    assert len(data) > 100 * MAX_DETECTION_INPUT
    text = decode_bytes(data)
    assert text.startswith(sentence) and text.endswith(sentence)


def test_quoted_printable_attached_mail_is_stored_decoded() -> None:
    """A message/rfc822 part sent quoted-printable is stored as the mail itself, umlauts intact."""
    raw = (b"From: a@customer.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsiehe\r\n"
           b"--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Subject: inner\r\n\r\nGr=C3=BC=C3=9Fe\r\n--B--\r\n")
    [attached] = parse_mail(raw).attachments
    assert attached.content.startswith(b"Subject: inner") and "Grüße".encode() in attached.content


def test_thunderbird_html_signature_is_cut_and_quote_kept_as_quote() -> None:
    """Thunderbird's moz-signature and moz-cite-prefix are read as signature and quote."""
    markup = ('<p>Neue Antwort.</p><div class="moz-signature">-- <br>Anna</div>'
              '<div class="moz-cite-prefix">Am 30.11.2026 schrieb Support:</div><blockquote type="cite">alt</blockquote>')
    assert visible_text(html_to_text(markup)) == "Neue Antwort."
    assert "> alt" in html_to_text(markup)


def test_quoted_persons_signature_inside_a_gmail_quote_stays_quoted() -> None:
    """A gmail_signature inside the quoted history adds no cut above the quote, it stays quoted."""
    markup = ('<div>Neu</div><div class="gmail_quote"><div class="gmail_attr">On Mon, 30 Nov 2026 a@b.example wrote:</div>'
              '<blockquote class="gmail_quote">Alt<div class="gmail_signature">Sig</div></blockquote></div>')
    text = html_to_text(markup)
    assert "-- " not in text.split("\n") and "> > Sig" in text
    assert visible_text(text) == "Neu"


NOTICE_EN = """Customer reply [MH#10042] "Server down"
Organisation: Beispiel GmbH
From: anna@customer.example (authorised contact)
Instruction: yes, from an authorised contact
Note: internal remark

Please restart de-fr-srv-0815.

--
Reply to this mail to answer the customer. Commands on lines of their own at the top:
#note (internal, not sent), #close, #pending, #open, #assign <operator>,
#primary <address>, #authorise <address>, #adduser <address> (requests of the organisation)
"""


@pytest.mark.parametrize(("reply", "expected"), [
    ("Done, restarted.\n\n________________________________\n" + NOTICE_EN, "Done, restarted."),
    ("Done, restarted.\n\n" + NOTICE_EN.replace("\n--\n", "\n"), "Done, restarted."),
    ("Done.\n" + NOTICE_EN.split("\n", 1)[1].replace("\n--\n", "\n"), "Done."),
    ("Done.\n\n" + "\n".join("> " + line for line in NOTICE_EN.replace("\n--\n", "\n").split("\n")), "Done."),
    (NOTICE_EN, ""),
], ids=["underscores", "unquoted-notice", "notice-without-event-line", "quoted-notice", "notice-only"])
def test_operator_notice_text_is_never_new_text(reply: str, expected: str) -> None:
    """Whatever the operator's client did to our notice, none of its lines count as text for the customer."""
    assert new_text(reply) == expected


def test_a_short_underscore_line_in_own_text_is_kept() -> None:
    """A line of a few underscores (a form field) is the sender's text, not Outlook's separator."""
    assert visible_text("Name: __________\nDanke") == "Name: __________\nDanke"
