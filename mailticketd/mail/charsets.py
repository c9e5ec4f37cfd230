"""Turn the bytes of a body, a header or a file name into text, whatever charset they claim or lack."""

from __future__ import annotations

import base64
import codecs
import quopri
import re

from charset_normalizer import from_bytes

# Codecs that are no charsets: they interpret backslashes or host names.
_REFUSED_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode"})
# Mailers label text in a superset with the older name (windows-1252 text as iso-8859-1);
# decoding with the superset gets the same printable text and the extra characters right.
_SUPERSETS = {"iso8859-1": "cp1252", "iso8859-9": "cp1254", "tis-620": "cp874", "iso8859-11": "cp874",
              "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949"}
# The Latin guess: what undeclared 8-bit text from German and English mailers almost always is.
LATIN_GUESS = "cp1252"
# Detection is slow on large input and needs little to decide; only this much of a body is shown to it.
MAX_DETECTION_INPUT = 16 * 1024
# A header or file name needs less; a mail may carry many of them.
MAX_HEADER_DETECTION_INPUT = 1024
# Below this many non-ASCII bytes detection is a coin toss among CJK codecs; the Latin guess is safer.
MIN_DETECTION_BYTES = 6


def codec_of(charset: str | None) -> str | None:
    """The Python codec for a declared charset (a superset where mailers mislabel), or None if unusable."""
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip("\"'").lower())
    except Exception:  # noqa: BLE001 - LookupError, or ValueError for a NUL in the name
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return _SUPERSETS.get(info.name, info.name)


# Codecs whose strict decoding never yields a lone surrogate: their text needs no check (a copy of the whole body).
_NO_SURROGATES = frozenset({"utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252", "cp1250", "cp1251", "cp1254"})


def _strict(data: bytes | bytearray, codec: str) -> str | None:
    try:
        text = data.decode(codec)
        if codec not in _NO_SURROGATES:
            text.encode("utf-8")  # some codecs yield lone surrogates, which are no text
        return text
    except Exception:  # noqa: BLE001 - any codec failure means "not this charset"
        return None


def _lenient(data: bytes | bytearray, codec: str) -> tuple[str, float]:
    """Decode replacing bad bytes; also the share of non-ASCII characters that decoded cleanly."""
    try:
        text = data.decode(codec, errors="replace").encode("utf-8", "replace").decode("utf-8")
    except Exception:  # noqa: BLE001 - a codec that cannot even replace fits nothing
        return "", 0.0
    foreign = sum(1 for c in text if c > "\x7f")
    bad = text.count("\ufffd")
    return text, (foreign - bad) / foreign if foreign else 1.0


def detect(data: bytes | bytearray, limit: int = MAX_DETECTION_INPUT) -> str | None:
    """The charset detection believes in for undeclared 8-bit bytes, or None when the Latin guess is as good."""
    sample = data[:limit]
    if sum(1 for byte in sample if byte > 0x7F) < MIN_DETECTION_BYTES:
        return None
    try:
        matches = from_bytes(sample)
        best = matches.best()
    except Exception:  # noqa: BLE001 - detection is a hint, never a failure
        return None
    if best is None:
        return None
    codec = codec_of(best.encoding)
    if codec is None or codec == LATIN_GUESS:
        return None
    # Among equally plausible answers the Latin guess wins; so does a single-byte codec that reads
    # the bytes as the Latin guess does (cp1250 for German text): the answer would not differ.
    plausible = {codec_of(m.encoding) for m in matches if m.chaos <= best.chaos}
    if LATIN_GUESS in plausible or _strict(sample, codec) == _strict(sample, LATIN_GUESS):
        return None
    return codec


def decode_bytes(data: bytes | bytearray, charset: str | None = None, notes: list[str] | None = None) -> str:
    """Decode a body: declared charset, else UTF-8, keeping all valid characters of a mostly fitting one.

    A declared charset with a few bad bytes keeps every good character and replaces only the bad
    ones; one that fits badly overall (most of its non-ASCII text broken) gives way to UTF-8,
    then to detection, then to the Latin guess.
    """
    codec = codec_of(charset)
    if charset and codec is None and notes is not None:
        notes.append(f"unknown charset {charset!r}, decoded by fallback")
    if codec is None and data.isascii():
        return data.decode("ascii")
    if codec and (text := _strict(data, codec)) is not None:
        return text
    # A us-ascii label on 8-bit data says nothing, so that data goes down the undeclared chain.
    if codec != "utf-8" and (text := _strict(data, "utf-8")) is not None:
        return text
    for candidate in (codec, "utf-8"):
        if candidate and candidate != "ascii":
            text, clean = _lenient(data, candidate)
            if clean > 0.5:
                if notes is not None:
                    notes.append(f"{text.count(chr(0xFFFD))} invalid byte(s) in {candidate} text replaced")
                return text
    if codec not in (None, "utf-8", "ascii") and notes is not None:
        notes.append(f"body not valid {charset!r}, decoded by fallback")
    return data.decode(detect(data) or LATIN_GUESS, errors="replace")


def decode_header_bytes(data: bytes, hint: str | None = None, *, detecting: bool = True) -> str:
    """Decode raw 8-bit header bytes: UTF-8, then the charset the body declares, then detection, then Latin.

    ``detecting=False`` skips detection, for headers nobody reads: a mail may carry thousands.
    """
    if data.isascii():
        return data.decode("ascii")
    if (text := _strict(data, "utf-8")) is not None:
        return text
    codec = codec_of(hint)
    if codec and codec not in ("utf-8", "ascii") and (text := _strict(data, codec)) is not None:
        return text
    detected = detect(data, MAX_HEADER_DETECTION_INPUT) if detecting else None
    return data.decode(detected or LATIN_GUESS, errors="replace")


# Encoded text may not hold spaces, but some mailers put them there (zammad-mail050).
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\r\n]*?)\?=")
_EW = r"=\?[^?\s]+\?[bBqQ]\?[^?\r\n]*?\?="
ENCODED_RUN = re.compile(rf"{_EW}(?:[ \t\r\n]*{_EW})*")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def decode_run(run: str) -> str:
    """Decode adjacent encoded words, joining same-charset bytes split mid-character."""
    pieces: list[tuple[str, bytes]] = []
    for charset, encoding, payload in _ENCODED_WORD.findall(run):
        charset = charset.split("*", 1)[0].lower()
        try:
            if encoding in "bB":
                data = base64.b64decode(payload + "=" * (-len(payload) % 4))
            else:
                data = quopri.decodestring(payload.encode("ascii", "replace"), header=True)
        except Exception:  # noqa: BLE001 - a broken word stays as written
            return run
        if pieces and pieces[-1][0] == charset:
            data = pieces.pop()[1] + data
        pieces.append((charset, data))
    return "".join(decode_bytes(data, charset) for charset, data in pieces)


def unfolded(value: object, hint: str | None = None, *, detecting: bool = True) -> str:
    """The header value unfolded, its raw 8-bit bytes (surrogate escapes in compat32) decoded."""
    raw = str(value).encode("utf-8", "surrogateescape")
    text = decode_header_bytes(raw, hint, detecting=detecting)
    return _FOLD.sub("", text).replace("\r", "").replace("\n", " ")


def decode_header_text(value: object, hint: str | None = None, *, detecting: bool = True) -> str:
    """Decode one raw header value: 8-bit bytes via the header charset chain, then RFC 2047 words.

    ``hint`` is the charset the body declares: raw 8-bit headers are mostly written in it.
    """
    return ENCODED_RUN.sub(lambda m: decode_run(m.group(0)), unfolded(value, hint, detecting=detecting))


def collapse(text: str) -> str:
    """Whitespace runs to single spaces, ends trimmed."""
    return " ".join(text.split())
