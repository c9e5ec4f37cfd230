"""The aiosmtpd handler: recipient policy, limits, and ``250`` only after the inbox commit."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailticketd.config import Config
from mailticketd.metrics import Metrics
from mailticketd.smtp import replies
from mailticketd.smtp.spool import SpooledEnvelope
from mailticketd.storage import Database
from mailticketd.storage.intake import Arrival, BacklogFull

log = structlog.get_logger("mailticketd.smtp")

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<?([^\s<>]+)>?", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# Bytes of a spooled mail searched for its Message-ID (a header block is rarely longer).
_HEAD = 256 * 1024


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID from the header block, for logs and the inbox listing (the parser decides later)."""
    end = _HEADER_END.search(raw)
    match = _MESSAGE_ID.search(raw, 0, end.start() if end else len(raw))
    return match.group(1).decode("ascii", "replace") if match else None


class InboundHandler:
    """Accept mail for the configured support addresses and store it durably before saying ``250``."""

    def __init__(self, config: Config, db: Database, on_stored: Callable[[], None],
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.db = db
        self.on_stored = on_stored
        self.metrics = metrics or Metrics()

    def accepts(self, address: str) -> bool:
        """Our support addresses, also with a ``+`` sub-address (reply tokens); nothing else."""
        return self.config.mail.is_local(address)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        # With SMTPUTF8 enabled aiosmtpd keeps undecodable bytes as surrogates: no address has them.
        if not _is_text(address):
            self.refused(501, "bad-sender", peer=_peer(session))
            return replies.BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            self.refused(452, "too-many-recipients", peer=_peer(session))
            return replies.TOO_MANY_RECIPIENTS
        if "@" not in address or not _is_text(address):
            self.refused(501, "bad-recipient", recipient=address, peer=_peer(session))
            return replies.BAD_RECIPIENT
        if not self.accepts(address):
            self.refused(550, "unknown-recipient", recipient=address, peer=_peer(session))
            return replies.UNKNOWN_RECIPIENT.format(address=address)
        envelope.rcpt_tos.append(address)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        spool = envelope.spool if isinstance(envelope, SpooledEnvelope) else None
        size = spool.size if spool is not None else len(envelope.original_content or b"")
        message_id = message_id_of(spool.head(_HEAD) if spool is not None else envelope.original_content or b"")
        fields = {"peer": _peer(session), "mail_from": envelope.mail_from, "size": size,
                  "rcpt_tos": [_without_token(address) for address in envelope.rcpt_tos], "message_id": message_id}
        # The mail is read back from its spool only in the writer, in chunks under the write: no session holds
        # a whole mail.
        arrival = Arrival(
            peer=_peer(session), mail_from=envelope.mail_from or "<>", rcpt_tos=tuple(envelope.rcpt_tos),
            message_id=message_id, size=size, max_backlog=self.config.inbox.max_backlog,
            chunks=spool.chunks if spool is not None else lambda: [envelope.original_content or b""],
        )
        try:
            inbox_id = await self.db.intake.store(arrival)
        except BacklogFull:
            self.refused(451, "backlog-full", **fields)
            return replies.BACKLOG_FULL
        except Exception as error:
            self.refused(451, "storage-failed", error=f"{type(error).__name__}: {error}", **fields)
            return replies.TRY_LATER
        self.metrics.accepted.inc()
        log.info("smtp.accepted", code=250, inbox_id=inbox_id, **fields)
        self.on_stored()
        return replies.ACCEPTED.format(inbox_id=inbox_id)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would answer "500 Error: (Type) message": permanent, and it leaks internals.
        self.refused(451, "handler-error", error=f"{type(error).__name__}: {error}")
        return replies.TRY_LATER

    def refused(self, code: int, reason: str, **fields: object) -> None:
        """Count and log one refusal (one event per refused transaction step)."""
        self.metrics.refused.labels(code=str(code)).inc()
        level = log.warning if code < 500 else log.info
        level("smtp.refused", code=code, reason=reason, **fields)


def _without_token(address: str) -> str:
    """``support+…@domain``: a reply token in the journal would let a reader act as its recipient."""
    local, at, domain = address.partition("@")
    base, plus, _ = local.partition("+")
    return f"{base}+…{at}{domain}" if plus else address


def _is_text(address: str) -> bool:
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(char) < 32 for char in address)


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")
