"""Outcomes: exceptions a step raises to end the pipeline early, each with its intent.

::

    PipelineOutcome
     ├── Discard   stop; keep the mail, mark it done with the reason, log it
     └── Failure   stop; roll back, retry later, mark failed after the last attempt

Anything else a step raises is treated as a ``Failure``: the mail is kept and
retried, never lost, and the daemon goes on.
"""

from __future__ import annotations


class PipelineOutcome(Exception):
    """Base of the outcomes that end the pipeline before its last step."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Discard(PipelineOutcome):
    """Nothing more to do with this mail; it stays stored and the reason is logged."""

    def __init__(self, reason: str, *, ticket_id: int | None = None) -> None:
        super().__init__(reason)
        self.ticket_id = ticket_id


class Failure(PipelineOutcome):
    """The mail could not be processed now; it is kept and tried again."""
