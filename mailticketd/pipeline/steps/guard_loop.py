"""Recognise mail that must never be answered automatically (DESIGN §4)."""

from __future__ import annotations

import re

from mailticketd.mail.authresults import verdict
from mailticketd.pipeline.context import Context

_BULK_PRECEDENCE = {"bulk", "junk", "list"}
_AUTORESPONDER_HEADERS = ("x-autoreply", "x-autorespond")
# Asks us not to answer automatically; Exchange puts it on ordinary mail too, so the mail stays a mail.
_NO_ANSWER_WANTED = "x-auto-response-suppress"
# Auto-replies that carry none of the headers above, known only by how their subject starts
# (case-insensitive). The one list of them; tests/unit/test_auto_reply_subjects.py has a case per entry.
AUTO_REPLY_SUBJECTS: tuple[tuple[str, str], ...] = (
    ("auto-generated", r"\[auto[- ]?generated\]"),  # "[AUTO GENERATED] Re: …"
    ("automatische-antwort", r"automatische antwort\s*(?::|$)"),  # Outlook, German
    ("abwesenheitsnotiz", r"abwesenheitsnotiz\s*(?::|$)"),  # Outlook and Notes, German
    ("out-of-office", r"out of (?:the )?office\s*(?::|auto[- ]?reply\b|reply\b|$)"),  # Exchange, Zimbra
    ("automatic-reply", r"automatic reply\s*:"),  # Outlook, English
    ("auto", r"auto\s*:"),  # Lotus Notes / Domino: "Auto: …"
    ("autoreply", r"auto[- ]?reply\s*:"),  # "AutoReply:", "Auto-Reply:", "Auto Reply:"
    ("autoresponse", r"auto[- ]?response\s*:"),
    ("reponse-automatique", r"r[ée]ponse automatique\s*:"),  # Outlook, French
    ("automatisch-antwoord", r"automatisch antwoord\s*:"),  # Outlook, Dutch
)
_AUTO_REPLY_SUBJECT = re.compile(
    "|".join(f"(?P<{name.replace('-', '_')}>{pattern})" for name, pattern in AUTO_REPLY_SUBJECTS), re.IGNORECASE
)


def auto_reply_subject(subject: str) -> str | None:
    """The name of the AUTO_REPLY_SUBJECTS entry the subject starts with, or None."""
    match = _AUTO_REPLY_SUBJECT.match(subject.strip())
    return match.lastgroup.replace("_", "-") if match and match.lastgroup else None


class GuardLoop:
    """Mark bounces, auto-replies, bulk mail, spam, forged senders and our own mail as not to be answered."""

    name = "guard-loop"

    async def run(self, ctx: Context) -> None:
        if ctx.envelope.web is not None:
            return  # typed into the web helpdesk by a logged-in person: no machine wrote it
        ctx.authentication = verdict(ctx.mail, ctx.config.operators.authserv_id)
        reason = _bounce_reason(ctx)
        if reason:
            ctx.kind = "bounce"
        else:
            reason = _automatic_reason(ctx)
            if reason:
                ctx.kind = "auto-reply"
            else:
                reason = _loop_or_spam_reason(ctx)
                if reason in ("own-x-loop", "own-address"):
                    ctx.kind = "auto-reply"  # our own mail coming back: stored, nobody is told
        if reason:
            ctx.no_auto_reply = reason
            ctx.flags.append(f"no-auto-reply:{reason}")


def _bounce_reason(ctx: Context) -> str | None:
    content_type = (ctx.mail.header("content-type") or "").lower()
    if content_type.startswith("multipart/report") and "delivery-status" in content_type:
        return "delivery-report"
    author = ctx.author_address
    if author and ctx.is_system_address(author):
        return "mailer-daemon"
    if ctx.envelope.is_bounce and author is None:
        return "empty-return-path"
    return None


def _automatic_reason(ctx: Context) -> str | None:
    auto_submitted = (ctx.mail.header("auto-submitted") or "").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto-submitted"
    precedence = (ctx.mail.header("precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"precedence-{precedence}"
    for header in _AUTORESPONDER_HEADERS:
        if ctx.mail.header(header) is not None:
            return header
    if ctx.envelope.is_bounce:
        return "empty-return-path"
    if auto_reply_subject(ctx.mail.subject):
        return "auto-reply-subject"
    return None


def _loop_or_spam_reason(ctx: Context) -> str | None:
    loops = {value.strip().lower() for value in ctx.mail.headers.get("x-loop", ())}
    if loops & set(ctx.config.mail.addresses):
        return "own-x-loop"
    author = ctx.author_address
    if author and ctx.is_local_address(author):
        return "own-address"
    if (ctx.mail.header("x-spam-flag") or "").strip().lower() == "yes":
        return "spam"
    if (ctx.mail.header("x-spam-status") or "").strip().lower().startswith("yes"):
        return "spam"
    if ctx.authentication is not None and ctx.authentication.dmarc == "fail":
        return "dmarc-fail"
    if ctx.mail.header(_NO_ANSWER_WANTED) is not None:
        return _NO_ANSWER_WANTED
    return None
