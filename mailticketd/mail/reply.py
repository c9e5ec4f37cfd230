"""Find the new, unquoted part of a reply: what the sender wrote above the quoted history."""

from __future__ import annotations

import re

from mailparser_reply import EmailReplyParser

# German and English first; French and Dutch because neighbouring customers write them and
# their header words ("Envoyé :", "Verzonden:") cannot be mistaken for German or English text.
LANGUAGES = ("de", "en", "fr", "nl")
MAX_LINE = 300
MAX_TOTAL = 64 * 1024
# The quoted history is looked for in the first CUT_CHARS characters of a text, and the visible text is at most
# that long: a 25 MB log pasted into a mail cost several times its size as lines, copies and joins, and nobody
# reads that much as a reply (the article keeps the whole text, the inbox the raw mail).
CUT_CHARS = 1 << 20
# The "Am … schrieb …:" and "On … wrote:" patterns backtrack roughly cubically on lines that
# start like an attribution; a real one is short, and the rules below read the full line anyway.
MAX_ATTRIBUTION_LINE = 100

_PARSER = EmailReplyParser(languages=list(LANGUAGES))

_ATTRIBUTION_START = re.compile(r"^[>\s]*(?:on|am|op|le|el|il)\b", re.IGNORECASE)
_ATTRIBUTION_VERB = re.compile(
    r"\b(?:wrote|writes|schrieb|schreef|a écrit|escribió|ha scritto)\b", re.IGNORECASE
)
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(?:ursprüngliche nachricht|original message|originalnachricht|original-nachricht"
    r"|message d'origine|oorspronkelijk bericht)\s*-{2,}$",
    re.IGNORECASE,
)
_FROM_HEADER = re.compile(r"^\*?(?:von|from|de|van)\s?:\*?\s*\S", re.IGNORECASE)
_SENT_HEADER = re.compile(r"^\*?(?:gesendet|sent|datum|date|envoyé|verzonden)\s?:", re.IGNORECASE)
_SEPARATOR = re.compile(r"^[_\-=*~]{10,}$")
# Outlook's reply separator (32 underscores), even with no header block after it.
_OUTLOOK_SEPARATOR = re.compile(r"^_{30,}$")
# Lines of our own operator notice (templates/*/operator_notice.txt): the command list of its footer,
# its "Organisation:" line followed by the author line, its instruction line. Text from such a notice
# never goes to a customer, however it was quoted.
_TICKET_TAG = re.compile(r"\[[^\[\]\s]*#\d+\]")
_NOTICE_COMMANDS = re.compile(r"^[>\s]*#note \(.*\), #close, #pending", re.IGNORECASE)
_NOTICE_ORGANISATION = re.compile(r"^[>\s]*organi[sz]ation: ", re.IGNORECASE)
_NOTICE_AUTHOR = re.compile(r"^[>\s]*(?:von|from): .*\(.+\)$", re.IGNORECASE)
_NOTICE_INSTRUCTION = re.compile(r"^[>\s]*(?:weisung|instruction): (?:ja|yes|nein|no)\b", re.IGNORECASE)
_SENT_FROM = re.compile(
    r"^(?:sent from (?:my )?|sent with |gesendet von (?:meinem )?|von meinem |get outlook for "
    r"|envoyé de mon |verzonden (?:vanaf|met) (?:mijn )?)[\w\s\-.()<>:/@]{1,60}$",
    re.IGNORECASE,
)


def _parser_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(original index, line) pairs cut to the sizes the reply parser handles quickly.

    Whitespace is collapsed and blank runs kept to one line: the parser's patterns start
    with a greedy \\s*, which is quadratic on long runs of blanks.
    """
    kept: list[tuple[int, str]] = []
    total = 0
    for index, line in enumerate(lines):
        limit = MAX_ATTRIBUTION_LINE if _ATTRIBUTION_START.match(line[:MAX_LINE]) else MAX_LINE
        line = " ".join(line[:limit].split())
        if not line and kept and not kept[-1][1]:
            continue
        total += len(line) + 1
        if total > MAX_TOTAL:
            break
        kept.append((index, line))
    return kept


# mail-parser-reply splits a text only where its header patterns match (for our LANGUAGES): an attribution
# line starting "On"/"Am"/"Le"/"Op" followed by a blank, a block of lines starting "From:"/"Von:"/"De :"/… or
# "-----Original Message-----". Each match begins at the start of a line, after at most quote marks, stars,
# blanks and (where the library removes an Outlook separator line) underscores or dashes. A text where no line
# begins like that has no header for the library, whose patterns are costly: then it is not asked at all.
_HEADER_WORDS = ("von|gesendet|an|betreff|datum|cc|organisation|from|sent|to|subject|date|organization"
                 "|de |envoyé |à |objet |  |cc |van|verzonden|aan|onderwerp")
_MAY_HAVE_HEADER = re.compile(
    rf"^[>*_\- ]*(?:(?:on|am|le|op)\s|original message|(?:{_HEADER_WORDS}):)", re.MULTILINE | re.IGNORECASE
)


# The library reads a text to its end, at a cost that grows with its length (the quoted history is often most of
# it), but only its first header matters here: it is given the text through LIBRARY_MARGIN lines past the first
# line that may begin a header, and the whole text only when it finds no header in that part.
LIBRARY_MARGIN = 8


def may_have_header(text: str) -> bool:
    """False only when mail-parser-reply would find no quote header in ``text`` (as given to the library)."""
    return _MAY_HAVE_HEADER.search(text) is not None


def _library_cut(lines: list[str], margin: int = LIBRARY_MARGIN) -> int:
    """Index of the first line mail-parser-reply counts as quoted history (it reads ``margin`` lines past the
    first line that may begin a header, or all)."""
    kept = _parser_lines(lines)
    text = "\n".join(line for _, line in kept)
    candidate = _MAY_HAVE_HEADER.search(text)
    if candidate is None:
        return len(lines)  # what the library answers for a text without headers: one reply, all of it
    head = _through_line(text, candidate.start(), margin)
    message = _PARSER.read(head)
    if len(head) < len(text) and not (message.replies and (message.replies[0].headers or len(message.replies) > 1)):
        message = _PARSER.read(text)  # no header in the first part: the library's answer on the whole text
    if not message.replies:
        return len(lines)
    first = message.replies[0]
    if first.headers:  # nothing above the first quote header: bottom-posted or empty
        return 0
    if len(message.replies) == 1:
        return len(lines)
    # The reply is a prefix of the lines it was given; the parser may drop separator lines.
    wanted = first.content.split("\n")
    position = matched = 0
    while position < len(kept) and matched < len(wanted):
        line = kept[position][1]
        if line == wanted[matched].strip():
            matched += 1
        elif line and not _SEPARATOR.match(line):
            return len(lines)  # cannot place the cut: keep everything rather than guess
        position += 1
    return kept[position][0] if position < len(kept) else len(lines)


def _through_line(text: str, start: int, count: int) -> str:
    """``text`` up to the end of the ``count``-th line after the one holding ``start``."""
    end = start
    for _ in range(count + 1):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[:end]


def _is_attribution(text: str) -> bool:
    # Real attributions carry a date or an address; "On Monday I wrote:" is the sender's own text.
    return text.endswith(":") and bool(_ATTRIBUTION_VERB.search(text)) and bool(re.search(r"[0-9@]", text))


def _own_cut(lines: list[str]) -> int:
    """Index of the first line of quoted history by our own rules, or len(lines)."""
    for index, line in enumerate(lines):
        text = line[:MAX_LINE].strip()
        if text.rstrip() == "--" or _ORIGINAL_MESSAGE.match(text) or _OUTLOOK_SEPARATOR.match(text):
            return index
        if _FROM_HEADER.match(text) and any(
            _SENT_HEADER.match(following[:MAX_LINE].strip()) for following in lines[index + 1 : index + 4]
        ):
            return index
        if _ATTRIBUTION_START.match(text) and not text.startswith(">"):
            # Gmail wraps a long "On … <address>\nwrote:" over up to three lines.
            joined = text
            for following in [""] + lines[index + 1 : index + 3]:
                joined = f"{joined} {following[:MAX_LINE].strip()}".strip()
                if _is_attribution(joined):
                    return index
    return len(lines)


def _notice_cut(lines: list[str]) -> int:
    """Index where a copy of our own operator notice starts (its event line), or len(lines)."""
    for index, line in enumerate(lines):
        text = line[:MAX_LINE]
        if _NOTICE_COMMANDS.match(text) or _NOTICE_INSTRUCTION.match(text):
            return _notice_start(lines, index)
        if _NOTICE_ORGANISATION.match(text) and index + 1 < len(lines) and _NOTICE_AUTHOR.match(lines[index + 1][:MAX_LINE]):
            return _notice_start(lines, index)
    return len(lines)


def _notice_start(lines: list[str], index: int) -> int:
    """Walk up from a notice line to the notice's first line: the event line above "Organisation:"."""
    for up in range(index, max(index - 12, -1), -1):
        if _NOTICE_ORGANISATION.match(lines[up][:MAX_LINE]):
            return up - 1 if up > 0 and _TICKET_TAG.search(lines[up - 1][:MAX_LINE]) else up
    return index


def _drop_trailer(lines: list[str]) -> list[str]:
    """Remove a trailing quoted block with its attribution, separators and a 'Sent from' line."""
    lines = list(lines)
    removed_quote = False
    while lines:
        text = lines[-1][:MAX_LINE].strip()
        if not text or _SEPARATOR.match(text):
            lines.pop()
        elif text.startswith(">"):
            lines.pop()
            removed_quote = True
        elif removed_quote and text.endswith(":") and (_ATTRIBUTION_VERB.search(text) or "@" in text):
            lines.pop()
            removed_quote = False
        else:
            break
    if lines and _SENT_FROM.match(lines[-1][:MAX_LINE].strip()):
        lines.pop()
        while lines and not lines[-1].strip():
            lines.pop()
    return lines


def _below_leading_quote(lines: list[str]) -> str:
    """For bottom-posted replies: the text after the leading attribution and quote block."""
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    for index in range(start, min(start + 3, len(lines))):  # a wrapped attribution ends in ':'
        if lines[index][:MAX_LINE].rstrip().endswith(":"):
            start = index + 1
            break
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith(">")):
        start += 1
    rest = lines[start:]
    return "\n".join(line.rstrip() for line in _drop_trailer(rest[: _own_cut(rest)])).strip()


def _head(text: str) -> str:
    """At most ``CUT_CHARS`` of ``text``, ended at a line end when there is one."""
    if len(text) <= CUT_CHARS:
        return text
    end = text.rfind("\n", 0, CUT_CHARS)
    return text[: end if end > 0 else CUT_CHARS]


def _visible(text: str, *, whole_if_empty: bool = True) -> str:
    text = _head(text).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    lines = lines[: _notice_cut(lines)]
    reply = lines[: _library_cut(lines)]
    reply = _drop_trailer(reply[: _own_cut(reply)])
    visible = "\n".join(line.rstrip() for line in reply).strip()
    if not visible and any(line.lstrip().startswith(">") for line in lines):
        visible = _below_leading_quote(lines)
    if visible or not whole_if_empty:
        return visible
    return "\n".join(lines).strip() or text.strip()


def visible_text(text: str) -> str:
    """Return the part of a reply's plain text the sender newly wrote; never raises, never empties."""
    if not isinstance(text, str):
        return ""
    try:
        return _visible(text)
    except Exception:  # noqa: BLE001 - a reply we cannot split is shown whole
        return text.strip()


def new_text(text: str) -> str:
    """Only what the sender newly wrote: empty when everything looks quoted (for text sent on to others)."""
    if not isinstance(text, str):
        return ""
    try:
        return _visible(text, whole_if_empty=False)
    except Exception:  # noqa: BLE001 - nothing we can vouch for is new
        return ""
