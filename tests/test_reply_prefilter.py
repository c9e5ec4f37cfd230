"""The quote cutter skips mail-parser-reply for texts without any quote header, and cuts exactly as before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailticketd.mail.parse import parse_mail
from mailticketd.mail import reply
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


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _cut(text: str) -> int:
    """Where the library's cut falls in ``text``, as the cutter asks it."""
    return reply._library_cut(_lines(text))


def _cut_reading_everything(text: str) -> int:
    """The same, with the library given the whole text every time (as before it was given only the first part)."""
    return reply._library_cut(_lines(text), margin=1 << 30)


_LONG_PIECES = [*_PIECES, "\n> Zitat einer alten Zeile", "\n>> noch älter", "\nText ohne Zitat", "\n\n\n"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_LONG_PIECES), max_size=160).map("".join))
def test_reading_only_the_first_part_cuts_as_reading_everything(text: str) -> None:
    """The library reads a text only through a few lines past the first line that may begin a header: it cuts
    exactly where it cuts when it reads the whole text."""
    assert _cut(text) == _cut_reading_everything(text)


def test_real_mails_are_cut_as_when_the_library_reads_everything() -> None:
    """For every mail of the corpus, and for a reply with a long history below a header that comes only far after a
    line that looks like one, the cut is the one the whole text gives."""
    for path in sorted(CORPUS.glob("*.eml")):
        text = parse_mail(path.read_bytes()).text
        assert _cut(text) == _cut_reading_everything(text), path.name
    late = ("Hallo,\n\nAm Montag fällt der Server wieder aus.\n" + "Bitte prüfen.\n" * 30
            + "\nAm 1. Januar 2024 um 10:00 schrieb Support <support@example.net>:\n"
            + "> Wir haben den Server neu gestartet.\n" * 200)
    assert _cut(late) == _cut_reading_everything(late) == 33  # at the real header, far below the line like one
    assert new_text(late).endswith("Bitte prüfen.") and ">" not in new_text(late)
