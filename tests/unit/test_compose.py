"""Composing outgoing mail: what a sender controls is capped before the email package folds it."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone
from email.header import decode_header, make_header

from mailticketd.mail.compose import compose
from mailticketd.mail.limits import capped


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
