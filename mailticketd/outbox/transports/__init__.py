"""The ways a mail leaves the daemon: one ``Transport`` protocol, chosen by ``[outbound] transport``."""

from __future__ import annotations

from typing import Protocol

from mailticketd.config import OutboundConfig
from mailticketd.outbox.transports.errors import DeliveryFailure, PermanentFailure, TemporaryFailure
from mailticketd.outbox.transports.maildir import MaildirTransport
from mailticketd.outbox.transports.smtp import SmtpTransport


class Transport(Protocol):
    """Hands one mail for one recipient on; returns only once the far side has taken it."""

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        """Deliver ``raw``; raise ``TemporaryFailure`` or ``PermanentFailure`` when that fails.

        ``delivery_id`` is the same for every attempt of one outbox row, so a repeat can replace a copy.
        """
        ...


def make_transport(config: OutboundConfig) -> Transport:
    """The transport ``[outbound] transport`` names."""
    if config.transport == "smtp":
        return SmtpTransport.from_config(config)
    if config.transport == "maildir":
        return MaildirTransport(config.maildir)
    raise ValueError(f"unknown transport {config.transport!r}")


__all__ = [
    "DeliveryFailure", "MaildirTransport", "PermanentFailure", "SmtpTransport", "TemporaryFailure",
    "Transport", "make_transport",
]
