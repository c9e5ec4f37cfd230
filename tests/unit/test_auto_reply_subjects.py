"""Auto-replies known only by their subject: one case per entry of guard_loop.AUTO_REPLY_SUBJECTS."""

from __future__ import annotations

import pytest

from mailticketd.pipeline.steps.guard_loop import AUTO_REPLY_SUBJECTS, auto_reply_subject

# Subjects as the systems write them, each with the entry that must know it.
EXAMPLES = [
    ("[AUTO GENERATED] Re: [MH#10000] Server", "auto-generated"),
    ("Automatische Antwort: [MH#10000] Server", "automatische-antwort"),
    ("Abwesenheitsnotiz: [MH#10000] Server", "abwesenheitsnotiz"),
    ("Abwesenheitsnotiz", "abwesenheitsnotiz"),
    ("Out of Office: [MH#10000] Server", "out-of-office"),
    ("Out of Office AutoReply: [MH#10000] Server", "out-of-office"),
    ("out of the office", "out-of-office"),
    ("Automatic reply: [MH#10000] Server", "automatic-reply"),
    ("Auto: [MH#10000] Server", "auto"),
    ("AutoReply: [MH#10000] Server", "autoreply"),
    ("Auto-Reply: Server", "autoreply"),
    ("Autoresponse: Server", "autoresponse"),
    ("Réponse automatique : [MH#10000] Server", "reponse-automatique"),
    ("Automatisch antwoord: [MH#10000] Server", "automatisch-antwoord"),
]
# Subjects people write that merely mention such words.
HUMAN = ["Auto kaputt", "Out of office hours support?", "Re: Automatic reply: Server", "Automatische Antworten gehen nicht",
         "Abwesenheitsnotiz funktioniert nicht", "Autoreply settings", "Server"]


def test_every_entry_has_an_example() -> None:
    """No entry of the list goes untested."""
    assert {name for name, _ in AUTO_REPLY_SUBJECTS} == {name for _, name in EXAMPLES}


@pytest.mark.parametrize(("subject", "entry"), EXAMPLES, ids=[f"{e}:{s}" for s, e in EXAMPLES])
def test_auto_reply_subject_is_known(subject: str, entry: str) -> None:
    """The subject is recognised as an auto-reply, by the entry meant for it."""
    assert auto_reply_subject(subject) == entry
    assert auto_reply_subject(subject.upper()) == entry


@pytest.mark.parametrize("subject", HUMAN)
def test_human_subject_is_not_an_auto_reply(subject: str) -> None:
    """A person's subject that only mentions such words is an ordinary mail."""
    assert auto_reply_subject(subject) is None
