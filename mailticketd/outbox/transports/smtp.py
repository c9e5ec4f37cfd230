"""Hand mail to an SMTP relay with aiosmtplib, and sort its answers into temporary and permanent.

A refusal of *this mail* (MAIL FROM, RCPT TO or DATA) follows its reply
code: 5xx is permanent, anything else temporary.  Trouble with *the relay
itself* — refused or timed-out connections, a 4xx/5xx greeting, failed
STARTTLS or AUTH — is always temporary: it is not the mail's fault, and the
queue drains once the relay or its configuration is fixed (``max_lifetime``
bounds the wait).

An address or header that is not ASCII (a domain alone goes out in its IDNA
form) is sent with SMTPUTF8; a relay that does not offer it cannot take the
mail, which is a permanent failure of that one recipient's mail, flagged on
the person.
"""

from __future__ import annotations

import ssl

import aiosmtplib
from aiosmtplib import (
    SMTPDataError,
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
)

from mailticketd.config import OutboundConfig
from mailticketd.mail.compose import wire_address
from mailticketd.outbox.transports.errors import DeliveryFailure, PermanentFailure, TemporaryFailure

# relay_security → aiosmtplib's start_tls: None upgrades when offered, True insists, False never tries.
_START_TLS: dict[str, bool | None] = {"auto": None, "starttls": True, "none": False, "tls": False}
# "auto" is opportunistic, like Postfix's "may": encrypt when offered, without checking the certificate
# (a local relay's is usually self-signed). "starttls" and "tls" verify it.
_VERIFY: dict[str, bool] = {"auto": False, "starttls": True, "none": True, "tls": True}
_REFUSALS_OF_THE_MAIL = (SMTPSenderRefused, SMTPRecipientRefused, SMTPDataError)


class SmtpTransport:
    """One connection per mail to ``host:port``; returns once the relay has accepted the data."""

    def __init__(self, host: str, port: int, *, security: str = "auto", username: str = "",
                 password: str = "", timeout: float = 30.0, tls_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        if security not in _START_TLS:
            raise ValueError(f"unknown relay security {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.tls_context = tls_context
        self.local_hostname = local_hostname

    @classmethod
    def from_config(cls, config: OutboundConfig, *, local_hostname: str | None = None) -> SmtpTransport:
        return cls(config.relay_host, config.relay_port, security=config.relay_security,
                   username=config.relay_username, password=config.relay_password,
                   timeout=config.relay_timeout, local_hostname=local_hostname)

    @property
    def relay(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, mail_from: str, rcpt_to: str, raw: bytes, *, delivery_id: str = "") -> None:
        """Send ``raw`` to ``rcpt_to``; raises ``TemporaryFailure`` or ``PermanentFailure`` (a relay keeps no
        ``delivery_id``: the Message-ID lets the far side see a repeat)."""
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout,
            use_tls=self.security == "tls", start_tls=_START_TLS[self.security],
            validate_certs=_VERIFY[self.security],
            username=self.username or None, password=self.password or None,
            tls_context=self.tls_context, local_hostname=self.local_hostname,
        )
        mail_from, rcpt_to = wire_address(mail_from), wire_address(rcpt_to)
        try:
            await client.connect()
            await client.sendmail(mail_from, [rcpt_to], raw, mail_options=_options(mail_from, rcpt_to, raw))
        except (SMTPException, OSError, ValueError) as error:
            raise _failure(error, self.relay) from error
        finally:
            await _close(client)


def _options(mail_from: str, rcpt_to: str, raw: bytes) -> list[str]:
    """SMTPUTF8 (RFC 6531) for an address or header that is not ASCII; aiosmtplib refuses it if the relay lacks it."""
    end = raw.find(b"\r\n\r\n")
    if (mail_from + rcpt_to).isascii() and raw[:end if end >= 0 else len(raw)].isascii():
        return []
    return ["SMTPUTF8"]


def _failure(error: Exception, relay: str) -> DeliveryFailure:
    if isinstance(error, SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, _REFUSALS_OF_THE_MAIL):
        answer = f"{error.code} {error.message}"
        return PermanentFailure(answer) if 500 <= error.code <= 599 else TemporaryFailure(answer)
    if isinstance(error, SMTPResponseException):
        return TemporaryFailure(f"relay {relay} answered {error.code} {error.message}")
    if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
        # A certificate that does not verify is the relay's problem (or its configuration's), not the mail's.
        return TemporaryFailure(f"TLS with relay {relay} failed: {error}")
    if isinstance(error, SMTPNotSupported) and "SMTPUTF8" not in str(error):
        return TemporaryFailure(f"relay {relay} lacks a needed extension: {error}")
    if isinstance(error, (SMTPNotSupported, ValueError)):
        # An address aiosmtplib cannot put on the wire, or SMTPUTF8 the relay lacks: no retry helps.
        return PermanentFailure(f"relay {relay} cannot take this mail: {error}")
    if isinstance(error, ConnectionRefusedError) or isinstance(error.__cause__, ConnectionRefusedError):
        return TemporaryFailure(f"connection to relay {relay} refused")
    if isinstance(error, TimeoutError):
        return TemporaryFailure(f"relay {relay} timed out: {error}")
    return TemporaryFailure(f"relay {relay}: {error}")


async def _close(client: aiosmtplib.SMTP) -> None:
    """Say goodbye; a failing QUIT after accepted data must not turn into a failure (and a resend)."""
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (SMTPException, OSError):
        client.close()
