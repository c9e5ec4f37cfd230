"""Render an HTML mail body as plain text that quote stripping can read."""

from __future__ import annotations

import html as html_lib
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Elements whose content a reader never sees as mail text.
_SKIPPED = frozenset(
    {"head", "title", "script", "style", "noscript", "template", "object", "iframe", "svg", "-comment"}
)
# Elements a browser lays out on lines of their own.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "caption", "center", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)
_CELLS = frozenset({"td", "th"})
_SPACE = re.compile(r"[ \t\n\r\f\v\xa0\u200b]+")
_BLANK_RUN = re.compile(r"\n{3,}")


class _Writer:
    """Collect text line by line, prefixing lines inside blockquotes with '> '."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.quote_depth = 0
        self.pre_depth = 0

    def text(self, value: str) -> None:
        if self.pre_depth:
            first, *rest = value.replace("\r\n", "\n").split("\n")
            self.current.append(first)
            for segment in rest:
                self.newline(force=True)
                self.current.append(segment)
            return
        value = _SPACE.sub(" ", value)
        if not "".join(self.current).strip():
            self.current.clear()
            value = value.lstrip()
        if value:
            self.current.append(value)

    def newline(self, force: bool = False) -> None:
        line = "".join(self.current).rstrip()
        if line or force:
            self.lines.append(("> " * self.quote_depth + line).rstrip())
        self.current.clear()

    def block(self) -> None:
        """End the current line if it holds anything (nested blocks make no blank lines)."""
        self.newline(force=False)

    def result(self) -> str:
        self.newline()
        return _BLANK_RUN.sub("\n\n", "\n".join(self.lines)).strip("\n")


def _enter(node: LexborNode, tag: str, out: _Writer) -> None:
    if tag == "br":
        out.newline(force=True)
    elif tag in _BLOCKS:
        out.block()
        if tag == "li":
            out.text("- ")
    elif tag in _CELLS and "".join(out.current).strip():
        out.text(" ")
    if tag == "blockquote":
        out.quote_depth += 1
    elif tag == "pre":
        out.pre_depth += 1


def _leave(tag: str, out: _Writer) -> None:
    if tag in _BLOCKS:
        out.block()
    if tag == "blockquote":
        out.quote_depth -= 1
    elif tag == "pre":
        out.pre_depth -= 1


def _render(root: LexborNode) -> str:
    out = _Writer()
    # An explicit stack rather than recursion: a mail may nest thousands of elements.
    stack: list[tuple[LexborNode, bool]] = [(root, True)]
    while stack:
        node, entering = stack.pop()
        tag = (node.tag or "").lower()
        if not entering:
            _leave(tag, out)
            continue
        if node.is_text_node:
            out.text(node.text_content or "")
            continue
        if tag in _SKIPPED or node.is_comment_node:
            continue
        _enter(node, tag, out)
        stack.append((node, False))
        stack.extend((child, True) for child in reversed(list(node.iter(include_text=True))))
    return out.result()


def _crude(markup: str) -> str:
    """Last resort when the HTML parser fails: drop tags, decode entities."""
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h\d)\s*>", "\n", markup)
    text = html_lib.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def html_to_text(markup: str) -> str:
    """Return the text a reader sees in `markup`; never raises."""
    if not markup or not markup.strip():
        return ""
    markup = markup.replace("\x00", "")
    try:
        root = LexborHTMLParser(markup).root
        return _render(root) if root is not None else ""
    except Exception:  # noqa: BLE001 - a broken HTML part must not lose the mail
        return _crude(markup)
