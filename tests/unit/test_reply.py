"""Tests for mailticketd.mail.reply: the new, unquoted part of a reply."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from mailticketd.mail import reply
from mailticketd.mail.parse import parse_mail
from mailticketd.mail.reply import visible_text


def corpus_dir() -> Path:
    """The shared mail corpus, or the folder named by MAILTICKETD_CORPUS."""
    override = os.environ.get("MAILTICKETD_CORPUS")
    return Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mail"


CORPUS = corpus_dir()

# Expectations we knowingly do not share; each has its own test below saying why.
DIFFERENCES = {"talon-sparrow", "gitlab-html_only"}


def corpus_text(stem: str) -> str:
    """The text visible_text sees: a .body.txt file as it is, an .eml through parse_mail."""
    body = CORPUS / f"{stem}.txt"
    if body.exists():
        return body.read_text(encoding="utf-8")
    return parse_mail((CORPUS / f"{stem}.eml").read_bytes()).text


def _visible_reply_cases() -> list[Any]:
    cases = []
    for path in sorted(CORPUS.glob("*.expected.json")) if CORPUS.is_dir() else []:
        stem = path.name[: -len(".expected.json")]
        expected = json.loads(path.read_text(encoding="utf-8")).get("visible_reply")
        has_source = (CORPUS / f"{stem}.txt").exists() or (CORPUS / f"{stem}.eml").exists()
        if expected is not None and has_source and stem not in DIFFERENCES:
            cases.append(pytest.param(stem, expected, id=stem))
    return cases


def normalised(text: str) -> str:
    return " ".join(text.split())


def test_corpus_has_visible_reply_cases() -> None:
    """The corpus yields visible-reply cases, so the parametrised test below is not vacuous."""
    assert len(_visible_reply_cases()) >= 15


@pytest.mark.parametrize("stem,expected", _visible_reply_cases())
def test_corpus_visible_reply(stem: str, expected: str) -> None:
    """visible_text yields the corpus's expected new text, compared after whitespace normalisation."""
    assert normalised(visible_text(corpus_text(stem))) == normalised(expected)


def test_sparrow_signature_is_cut_unlike_talon() -> None:
    """talon keeps Sparrow's '-- ' signature in the reply; we cut at a '-- ' line by design, leaving 'Hello'."""
    assert visible_text(corpus_text("talon-sparrow")) == "Hello"


def test_gmail_html_reply_is_plain_text_not_markdown() -> None:
    """GitLab renders this HTML reply as Markdown; we render plain text, so the words match once Markdown and tags are removed."""
    expected = json.loads((CORPUS / "gitlab-html_only.expected.json").read_text(encoding="utf-8"))["visible_reply"]
    expected = re.sub(r"!\[[^\]]*\]\([^)]*\)|<[^>]+>|\*", " ", expected)
    assert normalised(visible_text(corpus_text("gitlab-html_only")).replace("*", " ")) == normalised(expected)


def test_attribution_only_body_is_returned_whole() -> None:
    """A body of nothing but attribution lines (mail-parser-reply's multiline_on) is returned whole, never emptied."""
    text = corpus_text("mail-parser-reply-multiline_on.body")
    assert visible_text(text) == text.strip()


def test_outlook_german_original_message_separator() -> None:
    """Outlook's '-----Ursprüngliche Nachricht-----' starts the quoted history."""
    text = "Danke, läuft wieder.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\nGesendet: Montag\n\nAlter Text"
    assert visible_text(text) == "Danke, läuft wieder."


def test_english_original_message_separator() -> None:
    """'-----Original Message-----' starts the quoted history."""
    assert visible_text("Thanks!\r\n\r\n-----Original Message-----\r\nFrom: x\r\n\r\nold") == "Thanks!"


def test_outlook_german_header_block() -> None:
    """An Outlook 'Von: … Gesendet: … An: … Betreff:' block starts the quoted history."""
    text = (
        "Hallo,\nder Server de-fr-srv-0815 ist wieder erreichbar.\n\nGruß Hans\n\n"
        "Von: Support <support@example.net>\nGesendet: Montag, 2. Februar 2026 10:00\n"
        "An: Hans Müller <hans@example.de>\nBetreff: AW: [MH#10042] Ausfall\n\nAlter Text"
    )
    assert visible_text(text) == "Hallo,\nder Server de-fr-srv-0815 ist wieder erreichbar.\n\nGruß Hans"


def test_outlook_bold_header_block_after_separator_line() -> None:
    """Outlook's text rendering with '____' separator and '*Von:*' headers is cut, the separator with it."""
    text = "Erledigt.\n\n________________________________\n*Von:* Support\n*Gesendet:* Montag\n*An:* Hans\n\nalt"
    assert visible_text(text) == "Erledigt."


def test_thunderbird_german_attribution() -> None:
    """Thunderbird's 'Am 01.02.2026 um 10:00 schrieb X:' and the quote below it are removed."""
    text = "Passt, danke.\n\nAm 01.02.2026 um 10:00 schrieb Support Team:\n> Bitte testen Sie erneut.\n>\n> Gruß\n"
    assert visible_text(text) == "Passt, danke."


def test_gmail_wrapped_english_attribution() -> None:
    """Gmail's 'On … <address>' wrapped before 'wrote:' is recognised over two lines."""
    text = "Works now.\n\nOn Mon, Feb 2, 2026 at 10:00 AM Support Team <support@example.net>\nwrote:\n\n> old\n"
    assert visible_text(text) == "Works now."


def test_signature_is_cut() -> None:
    """Everything from a '-- ' signature line on is dropped."""
    text = "Bitte neu starten.\n\n-- \nHans Müller\nBeispiel GmbH\nTel. 0123"
    assert visible_text(text) == "Bitte neu starten."


def test_trailing_quote_block_is_removed() -> None:
    """A trailing '>'-quoted block and the attribution line before it are removed."""
    text = "Siehe Log unten.\n\nHans Müller <hans@example.de> schrieb:\n> Was steht im Log?\n> \n"
    assert visible_text(text) == "Siehe Log unten."


def test_inline_quotes_before_new_text_are_kept() -> None:
    """Quoted lines followed by new text are context of an inline answer and stay."""
    text = "> Läuft der Dienst?\nNein, er startet nicht.\n> Log?\nAnbei."
    assert visible_text(text) == text


def test_bottom_posted_reply_is_found_below_the_quote() -> None:
    """When the quote comes first, the unquoted text below it is the reply."""
    text = "Am 01.02.2026 um 10:00 schrieb Support:\n> Geht es wieder?\nJa, danke.\n"
    assert visible_text(text) == "Ja, danke."


def test_bottom_posted_after_wrapped_attribution_loses_signature() -> None:
    """Below a wrapped Gmail attribution and its quote, the reply is found and its signature cut."""
    text = "\nOn Mon, Feb 2, 2026 at 10:00 AM Support <support@example.net>\nwrote:\n> alt\n\nNeu.\n\n-- \nHans"
    assert visible_text(text) == "Neu."


def test_sent_from_my_phone_trailer_is_dropped() -> None:
    """A closing 'Von meinem iPhone gesendet' / 'Sent from my iPhone' line is not part of the reply."""
    assert visible_text("Ok.\n\nVon meinem iPhone gesendet") == "Ok."
    assert visible_text("Ok.\n\nSent from my iPhone\n\nOn 2 Feb 2026, at 10:00, X <x@y.de> wrote:\n> a") == "Ok."


def test_own_wrote_sentence_is_not_an_attribution() -> None:
    """'On Monday I wrote:' has no date or address, so the text after it is kept."""
    text = "On Monday I wrote:\nthe config is broken"
    assert visible_text(text) == text


def test_hyphen_lists_and_greetings_are_kept() -> None:
    """Lines starting with '- ' and closing greetings are the sender's text, not a signature to cut."""
    text = "Bitte prüfen:\n- DNS\n- Firewall\n\nThanks, the rest works.\n\nMit freundlichen Grüßen\nHans"
    assert visible_text(text) == text


@pytest.mark.parametrize("text", ["> nur Zitat\n> mehr", "Am 01.02.2026 um 10:00 schrieb X:\n> alt"])
def test_never_empty_when_everything_looks_quoted(text: str) -> None:
    """If stripping would leave nothing, the whole stripped text is returned."""
    assert visible_text(text) == text.strip()


@pytest.mark.parametrize("text", ["", "   \n\n", "\x00", "\n" * 100_000, " " * 100_000])
def test_blank_and_odd_inputs(text: str) -> None:
    """Blank, NUL and huge whitespace-only inputs return their stripped form without raising."""
    assert visible_text(text) == text.strip()


@pytest.mark.parametrize("size", [3_000, 6_000])
def test_repeated_am_schrieb_returns(size: int) -> None:
    """A body of repeated 'Am schrieb ' (catastrophic backtracking uncapped) is handled, because input is capped first."""
    text = ("Am schrieb " * (size // 11 + 1))[:size]
    assert visible_text(text) == text.strip()
    assert visible_text("\n".join([text] * 10)).startswith("Am schrieb")


def test_input_caps_are_in_place() -> None:
    """The reply parser only ever sees lines of at most ~300 characters and at most ~64 KB in all."""
    assert reply.MAX_LINE <= 300 and reply.MAX_ATTRIBUTION_LINE <= reply.MAX_LINE
    assert reply.MAX_TOTAL <= 64 * 1024
    lines = reply._parser_lines(["x" * 1000] * 1000)
    assert max(len(line) for _, line in lines) <= reply.MAX_LINE
    assert sum(len(line) + 1 for _, line in lines) <= reply.MAX_TOTAL


def test_languages_include_german_and_english() -> None:
    """The reply parser is set up for German and English at least."""
    assert {"de", "en"} <= set(reply.LANGUAGES)


def test_a_huge_body_is_cut_by_its_head_at_a_line_end() -> None:
    """A pasted log of several megabytes shows its first megabyte as the visible text, ending at a whole line,
    and a quote in that head is still cut off."""
    line = "2026-11-30 03:14:13 de-fr-srv-0815 kernel: Größe überschritten\n"
    log = line * (3 * reply.CUT_CHARS // len(line))
    visible = visible_text(log)
    assert len(visible) <= reply.CUT_CHARS and visible.endswith(line.strip())
    assert log.startswith(visible)
    quoted = "Neue Frage zum Protokoll.\n\nAm 29.11.2026 schrieb Support <support@example.net>:\n> " + log
    assert visible_text(quoted) == "Neue Frage zum Protokoll."
