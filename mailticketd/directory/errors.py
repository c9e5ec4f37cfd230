"""The refusal every staff operation may raise."""

from __future__ import annotations


class AdminError(Exception):
    """A staff operation is refused; the message names the bad value and, where there is one, the way out.

    The message is the CLI's (English). A refusal that operators may meet in a mail also carries a ``code`` and
    its ``params``, so that templates/<lang>/_errors.txt can say it in the operator's language.
    """

    def __init__(self, message: str, code: str = "", **params: str) -> None:
        super().__init__(message)
        self.code = code
        self.params = params
