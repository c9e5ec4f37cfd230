"""How a transport says a send failed: try again later, or never.

::

    Exception
     └── DeliveryFailure           the transport did not take the mail
          ├── TemporaryFailure     relay down, timeout, 4xx, disk full: retried with back-off
          └── PermanentFailure     5xx to MAIL, RCPT or DATA: failed at once, operators told
"""

from __future__ import annotations


class DeliveryFailure(Exception):
    """The mail was not delivered; ``message`` is the server's answer or the local error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporaryFailure(DeliveryFailure):
    """Worth another try later."""


class PermanentFailure(DeliveryFailure):
    """Trying again cannot help."""
