"""The quote cutter skips mail-parser-reply for texts without any quote header, and cuts exactly as before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailticketd.mail.parse import parse_mail
from mailticketd.mail.reply import _PARSER, _parser_lines, may_have_header, new_text, visible_text
from tests.helpers import CORPUS

# Pieces of text the library's header patterns are made of, and of the text around them.
_PIECES = ["On ", "on ", "Am ", "AM ", "Le ", "Op ", "wrote:", "schrieb ", "a écrit :", "schreef:", "From: ", "Von: ",
           "Sent: ", "Gesendet: ", "De : ", "À : ", "Envoyé : ", "Objet : ", "Van: ", "Aan: ", "Subject: ", "To: ",
           "-----Original Message-----", "----- Original Message -----", "_" * 32, "-" * 34, ">", "> ", "*", " ",
           "  ", "\t", "\n", "\n\n", "\r\n", "x", "Mo, 1. Jan 2024 10:00", "kunde@firma.example", ":", "ſ", "K",
           "Hallo", "Grüße", "--", "\xa0", "\u200b", "Server de-fr-srv-0815 steht."]


def _library_finds_header(text: str) -> bool:
    """What mail-parser-reply itself says: does the text (as the cutter gives it to the library) hold a header?"""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    message = _PARSER.read("\n".join(line for _, line in _parser_lines(lines)))
    return len(message.replies) != 1 or bool(message.replies[0].headers)


def _filter_says_header(text: str) -> bool:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return may_have_header("\n".join(line for _, line in _parser_lines(lines)))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_no_header_the_library_would_find_is_skipped(text: str) -> None:
    """Whenever mail-parser-reply finds a quote header in a text, the cheap check says the text may have one."""
    if _library_finds_header(text):
        assert _filter_says_header(text)


def test_no_header_in_real_mails_is_skipped() -> None:
    """For every real-world mail of the corpus the cheap check lets through each text the library finds a header in,
    and skips at least some texts (the point of it)."""
    skipped = 0
    for path in sorted(CORPUS.glob("*.eml")):
        text = parse_mail(path.read_bytes()).text
        if _library_finds_header(text):
            assert _filter_says_header(text), path.name
        skipped += not _filter_says_header(text)
    assert skipped > 10


def test_a_mail_without_quote_keeps_its_signature_cut_as_before() -> None:
    """A reply without quoted history loses its "-- " signature and "Sent from" line exactly as before the check."""
    dash = ("Hallo,\n\nder Server de-fr-srv-0815 antwortet nicht.\n\nMit freundlichen Grüßen\nMax Muster\n\n-- \n"
            "Muster GmbH\nTel. +49 30 123456\nhttps://muster.example\n")
    sent = "Hi,\nthe VM is down again.\nThanks,\nAnna\n\nSent from my iPhone\n"
    greeting = ("Guten Tag,\n\nbitte starten Sie den Server neu.\n\nViele Grüße\nKlaus Kunde\n"
                "Kunde AG | Hauptstr. 1 | 10115 Berlin\n")
    assert not any(_filter_says_header(text) for text in (dash, sent, greeting))  # the library is not asked
    expected_dash = "Hallo,\n\nder Server de-fr-srv-0815 antwortet nicht.\n\nMit freundlichen Grüßen\nMax Muster"
    assert new_text(dash) == visible_text(dash) == expected_dash
    assert new_text(sent) == visible_text(sent) == "Hi,\nthe VM is down again.\nThanks,\nAnna"
    assert new_text(greeting) == greeting.strip()


def test_a_mail_with_a_quote_header_is_still_cut_by_the_library() -> None:
    """A top-posted answer above an Outlook header block still loses the quoted history below it."""
    text = ("Danke, jetzt geht es wieder.\n\nGruß\nKlaus\n\nVon: Support <support@example.net>\n"
            "Gesendet: Montag, 1. Januar 2024 10:00\nAn: Klaus <klaus@kunde.example>\nBetreff: Server steht\n\n"
            "Wir haben den Server neu gestartet.\n")
    assert _filter_says_header(text)
    assert new_text(text) == "Danke, jetzt geht es wieder.\n\nGruß\nKlaus"
