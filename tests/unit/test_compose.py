"""Composing outgoing mail: what a sender controls is capped before the email package folds it."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from email.header import decode_header, make_header

from hypothesis import given, settings, strategies as st

from mailticketd.mail.compose import _with_email_package, compose
from mailticketd.mail.limits import NAME_BYTES, SUBJECT_BYTES, capped


def test_compose_caps_subject_topic_and_names_without_breaking_a_character() -> None:
    """A 100 KB subject and name become a subject of at most 998 bytes and a name of at most 256, umlauts intact."""
    outgoing = compose(sender_name="Support", sender="support@example.net", to="kunde@customer.example",
                       to_name="Jörg " * 20_000, subject="Überlastung " * 10_000, body="Hallo.\n",
                       now=datetime(2024, 1, 1, tzinfo=timezone.utc), message_id="a@example.net",
                       loop="support@example.net", thread_topic="Überlastung " * 10_000)
    message = email.message_from_bytes(outgoing.raw, policy=email.policy.default)
    assert str(message["Subject"]).startswith("Überlastung Überlastung")
    assert len(str(message["Subject"]).encode()) <= 998
    assert len(str(message["Thread-Topic"]).encode()) <= 998
    # The legacy decoder joins adjacent encoded words as RFC 2047 says; the new one adds a space between them.
    to = str(make_header(decode_header(email.message_from_bytes(outgoing.raw)["To"])))
    name = to.rsplit(" <", 1)[0]
    assert name.startswith("Jörg Jörg") and to.endswith(" <kunde@customer.example>")
    assert len(name.encode()) <= 256
    assert len(outgoing.raw) < 5_000


def test_capped_cuts_at_a_character_boundary() -> None:
    """Cutting inside a two-byte umlaut drops the whole character rather than leaving half of it."""
    assert capped("aü", 2) == "a"
    assert capped("aü", 3) == "aü"


_NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
# Text without control characters: the email package itself lets a lone CR end the header block.
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=300)


def _read(raw: bytes) -> dict[str, object]:
    """What a mail client shows of a mail: decoded headers (blanks folded as clients fold them) and the body."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    shown: dict[str, object] = {name: " ".join(str(message[name]).split()) for name in message.keys()}
    shown["To-Address"] = message["To"].addresses[0].addr_spec
    shown["To-Name"] = " ".join(message["To"].addresses[0].display_name.split())
    shown["From-Name"] = " ".join(message["From"].addresses[0].display_name.split())
    shown["body"] = message.get_content()
    for name in ("To", "From"):
        shown.pop(name)
    return shown


@settings(max_examples=150, deadline=None)
@given(subject=_TEXT, name=_TEXT, body=_TEXT, topic=_TEXT)
def test_mail_from_parts_reads_like_the_email_packages(subject: str, name: str, body: str, topic: str) -> None:
    """Whatever the subject, names and text, a mail put together from parts shows a client the same headers and
    body as the standard ``email`` package's, and every line stays within 998 bytes.  Its subject and thread topic
    show as they were written: there the text is the reference, as the ``email`` package loses the blank before
    a character it puts into an encoded word of its own (``𐀀 ¡`` shown as ``𐀀¡``), also in the mails the fast
    path hands to it whole."""
    fields = dict(sender_name="Support, Müller & Co", sender="support@example.net", to="kunde@customer.example",
                  to_name=name, subject=subject, body=body, now=_NOW, message_id="m1@example.net",
                  reply_to="support+tok@example.net", in_reply_to="a.b@customer.example",
                  references=tuple(f"ref{n}.{'x' * n}@example.net" for n in range(12)),
                  auto_submitted="auto-replied", loop="support@example.net", thread_topic=topic or None,
                  thread_index="AQHZxyz=")
    fast = compose(**fields).raw  # type: ignore[arg-type]
    slow = _with_email_package(**{**fields, "sender_name": capped("Support, Müller & Co", NAME_BYTES),  # type: ignore[arg-type]
                                  "to_name": capped(name, NAME_BYTES), "subject": capped(subject, SUBJECT_BYTES),
                                  "thread_topic": capped(topic, SUBJECT_BYTES) or None})
    if len(name) <= 5:  # a name this short always fits one encoded word: the mail was put together from parts
        assert fast != slow
    shown, expected = _read(fast), _read(slow)
    for header, text in (("Subject", subject), ("Thread-Topic", topic)):
        if fast != slow and header in shown:  # put together from parts (not handed to the email package whole)
            assert shown.pop(header) == " ".join(capped(text, SUBJECT_BYTES).split())
            expected.pop(header)
    assert shown == expected
    assert all(len(line) <= 998 for line in fast.split(b"\r\n"))
    assert b"\n" not in fast.replace(b"\r\n", b"")


def test_header_injection_through_a_name_or_subject_stays_inside_its_header() -> None:
    """A CR/LF in a customer's name or subject never starts a header of its own."""
    raw = compose(sender_name="Support", sender="support@example.net", to="kunde@customer.example",
                  to_name="Eve\r\nBcc: victim@example.org", subject="Hi\r\nBcc: victim@example.org", body="x",
                  now=_NOW, message_id="m@example.net", loop="support@example.net").raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw


def test_unusual_addresses_and_ids_still_make_a_valid_mail() -> None:
    """A recipient with a non-ASCII local part or a Message-ID with blanks goes the standard library's way."""
    raw = compose(sender_name="Support", sender="support@example.net", to="jörg@exämple.de", subject="Grüße",
                  body="Hallo", now=_NOW, message_id="m@example.net", in_reply_to="bad id@x",
                  loop="support@example.net").raw
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert message["To"].addresses[0].username == "jörg"
    assert message["Subject"] == "Grüße"


def test_subjects_in_thousands_of_different_characters_read_back_unchanged() -> None:
    """Subjects of 5,000 different characters (more than the encoder keeps worked out) read back as written."""
    characters = [chr(code) for code in range(0xA0, 0x3000) if chr(code).isprintable()][:5000]
    for start in range(0, len(characters), 100):
        subject = "Prüfung " + "".join(characters[start:start + 100])
        outgoing = compose(sender_name="Support", sender="support@example.net", to="kunde@customer.example",
                           subject=subject, body="Hallo.\n", now=datetime(2024, 1, 1, tzinfo=timezone.utc),
                           message_id="a@example.net", loop="support@example.net")
        message = email.message_from_bytes(outgoing.raw, policy=email.policy.default)
        assert "".join(str(message["Subject"]).split()) == "".join(subject.split())
