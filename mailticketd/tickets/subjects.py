"""Subjects that say nothing: "Hilfe", "Problem", "Frage" and the like ask for a better one (the helpdesk's rules)."""

from __future__ import annotations

import re

# Words that alone make no meaningful subject, German and English, lower case.
GENERIC_WORDS = frozenset({
    "hilfe", "problem", "probleme", "frage", "fragen", "anfrage", "anliegen", "support", "dringend", "wichtig",
    "störung", "fehler", "bitte", "hallo", "info", "ticket", "test", "kein", "betreff", "ohne",
    "help", "question", "questions", "request", "urgent", "important", "issue", "error", "please", "hello", "hi",
    "no", "subject",
})
# Reply and forward prefixes, and what is no word at all.
_PREFIXES = re.compile(r"^\s*(?:(?:re|aw|wg|fw|fwd|tr|antw|sv)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)


def is_generic(subject: str) -> bool:
    """True for an empty subject, or one of at most two words that all say nothing ("Dringend: Hilfe!")."""
    words = [word.lower() for word in _WORD.findall(_PREFIXES.sub("", subject))]
    return not words or (len(words) <= 2 and all(word in GENERIC_WORDS for word in words))
