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
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
# Mail clients mark what they add around a reply: the sender's signature (shown after a "-- " line,
# as plain-text mail does, so reply stripping cuts it) and the quoted history (shown quoted with "> ").
_SIGNATURE_CLASSES = frozenset({"gmail_signature", "moz-signature"})
_SIGNATURE_IDS = frozenset({"applemailsignature", "signature", "signature_bookmark", "divtagdefaultwrapper-signature"})
_QUOTE_CLASSES = frozenset({"gmail_quote", "gmail_quote_container", "gmail_extra_quote", "yahoo_quoted", "moz-cite-prefix"})
# Outlook puts the quoted mail after its reply header, not inside it: everything from here on is quoted.
_QUOTE_REST_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container",
                             "olk_src_body_section", "x_divrplyfwdmsg"})
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^<>]*?(/?)>")
# lexbor takes quadratic time on deeply nested block elements (20,000 nested <div>s: ~1 s);
# real mail stays far below this depth.
MAX_DEPTH = 1500
_SPACE = re.compile(r"[ \t\n\r\f\v\xa0\u200b]+")
_BLANK_RUN = re.compile(r"\n{3,}")


class _Writer:
    """Collect text line by line, prefixing lines inside blockquotes with '> '."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.current: list[str] = []
        self.has_text = False  # whether the current line holds more than whitespace
        self.quote_depth = 0
        self.pre_depth = 0
        self.signature_marked = False
        self.quoting_rest = False  # Outlook's reply header was met: the rest of the mail is quoted

    def text(self, value: str) -> None:
        if self.pre_depth:
            first, *rest = value.replace("\r\n", "\n").split("\n")
            self.current.append(first)
            for segment in rest:
                self.newline(force=True)
                self.current.append(segment)
            self.has_text = True
            return
        value = _SPACE.sub(" ", value)
        if not self.has_text:
            self.current.clear()
            value = value.lstrip()
        if value:
            self.current.append(value)
            self.has_text = self.has_text or bool(value.strip())

    def newline(self, force: bool = False) -> None:
        line = "".join(self.current).rstrip()
        if line or force:
            self.lines.append(("> " * self.quote_depth + line).rstrip())
        self.current.clear()
        self.has_text = False

    def block(self) -> None:
        """End the current line if it holds anything (nested blocks make no blank lines)."""
        self.newline(force=False)

    def result(self) -> str:
        self.newline()
        return _BLANK_RUN.sub("\n\n", "\n".join(self.lines)).strip("\n")


def _role(node: LexborNode) -> str | None:
    """What a mail client marked this element as: "signature", "quote", "quote-rest", or None."""
    attributes = node.attributes
    classes = set((attributes.get("class") or "").lower().split())
    element_id = (attributes.get("id") or "").lower()
    if attributes.get("data-smartmail") == "gmail_signature" or classes & _SIGNATURE_CLASSES:
        return "signature"
    if element_id in _SIGNATURE_IDS:
        return "signature"
    if classes & _QUOTE_CLASSES and (node.tag or "").lower() != "blockquote":  # a blockquote quotes anyway
        return "quote"
    if element_id in _QUOTE_REST_IDS:
        return "quote-rest"
    return None


def _enter_marked(role: str, out: _Writer) -> None:
    out.block()
    if role == "signature" and not out.quote_depth and not out.signature_marked:
        if not out.lines or out.lines[-1].strip() != "--":  # Gmail may have written the "-- " itself
            out.lines.append("-- ")
        out.signature_marked = True
    elif role == "quote" or (role == "quote-rest" and not out.quoting_rest):
        out.quote_depth += 1
        out.quoting_rest = out.quoting_rest or role == "quote-rest"


def _enter(tag: str, out: _Writer) -> None:
    if tag == "br":
        out.newline(force=True)
    elif tag in _BLOCKS:
        out.block()
        if tag == "li":
            out.text("- ")
    elif tag in _CELLS and out.has_text:
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
    # Entries: (node, entering, role the node was marked with).
    stack: list[tuple[LexborNode, bool, str | None]] = [(root, True, None)]
    while stack:
        node, entering, role = stack.pop()
        tag = (node.tag or "").lower()
        if not entering:
            _leave(tag, out)
            if role == "quote":
                out.block()
                out.quote_depth -= 1
            continue
        if node.is_text_node:
            out.text(node.text_content or "")
            continue
        if tag in _SKIPPED or node.is_comment_node:
            continue
        role = _role(node)
        if role:
            _enter_marked(role, out)
        _enter(tag, out)
        stack.append((node, False, role))
        stack.extend((child, True, None) for child in reversed(list(node.iter(include_text=True))))
    return out.result()


_RAW_TEXT_OPEN = re.compile(r"<(script|style|head)\b", re.IGNORECASE)


def _crude(markup: str) -> str:
    """Fallback for HTML lexbor should not see: drop tags, decode entities, in linear time."""
    kept: list[str] = []
    position = 0
    while match := _RAW_TEXT_OPEN.search(markup, position):
        kept.append(markup[position : match.start()])
        close = re.compile(rf"</{match.group(1)}\s*>", re.IGNORECASE).search(markup, match.end())
        position = close.end() if close else len(markup)
    kept.append(markup[position:])
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|li|tr|h\d)\s*>", "\n", "".join(kept))
    text = html_lib.unescape(re.sub(r"<[^<>]*>", " ", markup))
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def _too_deep(markup: str) -> bool:
    depth = 0
    for closing, name, self_closing in _TAG.findall(markup):
        if closing:
            depth = max(depth - 1, 0)
        elif not self_closing and name.lower() not in _VOID:
            depth += 1
            if depth > MAX_DEPTH:
                return True
    return False


def html_to_text(markup: str) -> str:
    """Return the text a reader sees in `markup`; never raises."""
    if not markup or not markup.strip():
        return ""
    markup = markup.replace("\x00", "")
    try:
        if _too_deep(markup):
            return _crude(markup)
        root = LexborHTMLParser(markup).root
        return _render(root) if root is not None else ""
    except Exception:  # noqa: BLE001 - a broken HTML part must not lose the mail
        return _crude(markup)
