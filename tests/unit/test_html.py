"""Tests for mailticketd.mail.html: HTML mail bodies rendered as plain text."""

from __future__ import annotations

from mailticketd.mail.html import html_to_text
from mailticketd.mail.reply import visible_text


def test_paragraphs_become_lines_and_entities_are_decoded() -> None:
    """'<p>Gr&uuml;&szlig;e</p><p>x</p>' becomes the two lines 'Grüße' and 'x'."""
    assert html_to_text("<p>Gr&uuml;&szlig;e</p><p>x</p>") == "Grüße\nx"


def test_br_is_a_newline_and_empty_div_a_blank_line() -> None:
    """<br> ends a line, and Gmail's '<div><br></div>' leaves one blank line."""
    assert html_to_text("<div>Hallo<br>Welt</div><div><br></div><div>Ende</div>") == "Hallo\nWelt\n\nEnde"


def test_nested_blocks_make_no_extra_blank_lines() -> None:
    """Nested block elements end a line once, not once per level."""
    assert html_to_text("<div><div><p>a</p></div></div><div>b</div>") == "a\nb"


def test_blockquote_lines_are_prefixed() -> None:
    """Each line inside <blockquote> gets '> ', nested quotes '> > '."""
    markup = "<p>Neu</p><blockquote><div>alt 1</div><div>alt 2<blockquote>älter</blockquote></div></blockquote>"
    assert html_to_text(markup) == "Neu\n> alt 1\n> alt 2\n> > älter"


def test_blockquote_is_stripped_as_quote_by_visible_text() -> None:
    """A Thunderbird-style HTML reply reduces to the new text once rendered and quote-stripped."""
    markup = (
        "<p>Danke, geht wieder.</p><div>Am 01.02.2026 um 10:00 schrieb Support:<br></div>"
        "<blockquote type='cite'><p>Bitte testen.</p></blockquote>"
    )
    assert visible_text(html_to_text(markup)) == "Danke, geht wieder."


def test_links_keep_their_text() -> None:
    """A link renders as its text, not its address."""
    assert html_to_text('Siehe <a href="https://example.net/x">Statusseite</a>.') == "Siehe Statusseite."


def test_scripts_styles_and_head_are_dropped() -> None:
    """Script, style, title and comments never reach the text."""
    markup = "<html><head><title>T</title><style>p{}</style></head><body><!-- c --><script>x()</script>ok</body></html>"
    assert html_to_text(markup) == "ok"


def test_whitespace_collapses_outside_pre() -> None:
    """Runs of whitespace and &nbsp; collapse to one space; <pre> keeps its layout."""
    assert html_to_text("<p>a \n\t b&nbsp;&nbsp;c</p><pre>  x\n    y</pre>") == "a b c\n  x\n    y"


def test_lists_and_tables() -> None:
    """List items get '- ' and table rows become lines with cells separated by spaces."""
    markup = "<ul><li>eins</li><li>zwei</li></ul><table><tr><td>A</td><td>B</td></tr><tr><td>C</td></tr></table>"
    assert html_to_text(markup) == "- eins\n- zwei\nA B\nC"


def test_empty_input() -> None:
    """Empty or whitespace-only HTML gives an empty string."""
    assert html_to_text("") == "" and html_to_text(" \n ") == ""


def test_deep_nesting_does_not_raise() -> None:
    """Twenty thousand nested elements (slow for lexbor, deep for recursion) still render their text."""
    assert html_to_text("<div>" * 20_000 + "tief &amp; unten" + "</div>" * 20_000) == "tief & unten"


def test_broken_markup_is_rendered() -> None:
    """Unclosed tags, stray '<' and NUL characters do not stop the rendering."""
    assert html_to_text("<p>a < b<p>c\x00d<b>e") == "a < b\ncde"
