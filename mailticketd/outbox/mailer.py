"""Write one outgoing mail into the outbox: render its template, set its headers, remember its Message-ID.

A letter with a secret (``SECRET_FIELDS``: a verification link) is stored
twice: as sent, and without the token; the outbox keeps only the second
once the mail is sent or has failed.

Every mail about a ticket carries the tag in its subject, ``In-Reply-To`` and
``References`` to the ticket's thread, a ``Reply-To`` with the recipient's
reply token, ``Auto-Submitted`` and ``X-Loop``, and Outlook's
``Thread-Topic``/``Thread-Index``.  It is queued in the caller's transaction,
so it leaves only if the change that caused it is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from mailticketd.config import Config
from mailticketd.mail.compose import Outgoing, compose, new_message_id
from mailticketd.mail.outlook import child_thread_index, continued_thread_index
from mailticketd.mail.templates import Rendered, Templates
from mailticketd.storage import Store
from mailticketd.tickets.models import Ticket
from mailticketd.tickets.tags import format_tag
from mailticketd.tickets.tokens import TokenSigner

log = structlog.get_logger("mailticketd.outbox")

# How many Message-IDs of a thread go into References: the first and the latest.
_REFERENCES = 10

# Context fields that hold a secret (a link with a token): the outbox keeps them only until the mail is sent.
SECRET_FIELDS = frozenset({"verification_url"})

AUTO_REPLIED = "auto-replied"
AUTO_GENERATED = "auto-generated"


@dataclass(frozen=True)
class Letter:
    """What to send to whom; the mailer adds everything else."""

    kind: str  # the outbox kind: ack, operator-notice, reply, status, command-error, verify, delivery-failed
    template: str
    to: str
    context: dict[str, Any]
    language: str
    to_name: str = ""
    auto_submitted: str = AUTO_GENERATED


@dataclass
class LetterBatch:
    """Letters queued in one transaction whose writing waits for ``Mailer.flush``: their rows are in the outbox at
    once (in order, counted by the limits), and all of them are rendered and composed in one trip to a worker
    thread before the transaction commits."""

    waiting: list[tuple[int, Letter, Callable[..., Outgoing], str | None]] = field(default_factory=list)


class Mailer:
    """Renders letters and queues them in the outbox of the current transaction."""

    def __init__(self, config: Config, templates: Templates, signer: TokenSigner) -> None:
        self.config = config
        self.templates = templates
        self.signer = signer

    def ticket_context(self, ticket: Ticket, organisation: str | None) -> dict[str, Any]:
        """What templates may say about a ticket."""
        return {"number": ticket.number, "tag": self.tag(ticket), "subject": ticket.subject,
                "organisation": organisation, "status": ticket.status}

    def _named(self, letter: Letter) -> dict[str, Any]:
        """The letter's context with a ticket without subject named in the reader's language."""
        ticket = letter.context.get("ticket")
        if not isinstance(ticket, dict) or ticket.get("subject"):
            return letter.context
        placeholder = self.templates.render("no_subject", letter.language).subject
        return letter.context | {"ticket": ticket | {"subject": placeholder}}

    def _render(self, letter: Letter) -> tuple[Rendered, str | None]:
        """The letter, and its body without secrets to keep once it is sent (None when it holds none)."""
        context = self._named(letter)
        rendered = self.templates.render(letter.template, letter.language, **context)
        secrets = {key: _without_token(str(value)) for key, value in context.items()
                   if key in SECRET_FIELDS and value}
        if not secrets:
            return rendered, None
        return rendered, self.templates.render(letter.template, letter.language, **(context | secrets)).body

    def _write(self, letter: Letter, build: Callable[..., Outgoing],
               tag: str | None) -> tuple[Outgoing, Outgoing | None]:
        """The composed mail, and its copy without secrets (None when it holds none); runs in a worker thread."""
        rendered, kept_body = self._render(letter)
        subject = rendered.subject
        if tag is not None and tag.lower() not in subject.lower():
            subject = f"{tag} {subject}"
        outgoing = build(subject=subject, body=rendered.body)
        return outgoing, build(subject=subject, body=kept_body) if kept_body is not None else None

    def tag(self, ticket: Ticket) -> str:
        return format_tag(self.config.mail.tag_prefix, ticket.number)

    async def send(self, store: Store, letter: Letter, *, now: datetime, ticket: Ticket | None = None,
                   in_reply_to: str | None = None, thread_index: str | None = None,
                   batch: LetterBatch | None = None) -> str | None:
        """Queue ``letter``; returns its Message-ID (without angle brackets), None if it may not be sent.  With a
        ``batch``, the mail itself is written by ``flush``, which the caller runs before the commit."""
        mail = self.config.mail
        if mail.is_local(letter.to):
            log.warning("outbox.refused_own_address", rcpt_to=letter.to, kind=letter.kind)
            return None  # the daemon never writes to itself: that is how loops start
        domain = mail.support_address.partition("@")[2]
        message_id = new_message_id(domain)
        reply_to, index = None, None
        references: tuple[str, ...] = ()
        if ticket is not None:
            reply_to = self.signer.address(mail.support_address, ticket.number, letter.to)
            thread = await store.tickets.thread_message_ids(ticket.id)
            references = tuple(thread[:1] + thread[1:][-(_REFERENCES - 1):]) if thread else ()
            in_reply_to = in_reply_to or (thread[-1] if thread else None)
            if ticket.thread_index is None:
                base = continued_thread_index(thread_index, now)
                await store.tickets.set_thread_index(ticket.id, base)
            else:
                base = ticket.thread_index
            index = child_thread_index(base, now)
        build = partial(
            compose, sender_name=mail.from_name, sender=mail.support_address, to=letter.to, to_name=letter.to_name,
            now=now, message_id=message_id, reply_to=reply_to,
            in_reply_to=in_reply_to, references=references, auto_submitted=letter.auto_submitted,
            loop=mail.support_address, thread_topic=ticket.subject if ticket else None, thread_index=index,
        )
        tag = self.tag(ticket) if ticket else None
        if batch is not None:
            outbox_id = await store.outbox.enqueue(
                ticket_id=ticket.id if ticket else None, kind=letter.kind, mail_from=mail.support_address,
                rcpt_to=letter.to, message_id=message_id, raw=b"")
            batch.waiting.append((outbox_id, letter, build, tag))
        else:
            # Rendering and composing cost time that grows with what a sender wrote: not on the event loop, and in
            # one hop to the thread.
            outgoing, kept = await asyncio.to_thread(self._write, letter, build, tag)
            await store.outbox.enqueue(
                ticket_id=ticket.id if ticket else None, kind=letter.kind, mail_from=mail.support_address,
                rcpt_to=letter.to, message_id=message_id, raw=outgoing.raw,
                raw_after_send=kept.raw if kept else None,
            )
        if ticket is not None:
            await store.articles.remember_message_id(message_id, ticket_id=ticket.id, article_id=None,
                                                     direction="out")
        return message_id

    async def flush(self, store: Store, batch: LetterBatch) -> None:
        """Write the batch's letters into their outbox rows: rendered and composed together, off the event loop."""
        if not batch.waiting:
            return
        waiting, batch.waiting = batch.waiting, []
        written = await asyncio.to_thread(self._write_all, waiting)
        await store.outbox.fill([(outbox_id, outgoing.raw, kept.raw if kept else None)
                                 for (outbox_id, *_), (outgoing, kept) in zip(waiting, written)])

    def _write_all(self, waiting: list[tuple[int, Letter, Callable[..., Outgoing], str | None]]
                   ) -> list[tuple[Outgoing, Outgoing | None]]:
        return [self._write(letter, build, tag) for _, letter, build, tag in waiting]


def _without_token(url: str) -> str:
    """``https://desk/verify/TOKEN`` as ``https://desk/verify/…``: staff still see which link was sent."""
    return url.rpartition("/")[0] + "/…"
