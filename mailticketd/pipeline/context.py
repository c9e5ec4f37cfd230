"""The typed context that the pipeline steps share for one mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailticketd.config import Config
from mailticketd.directory.models import User, Vm
from mailticketd.mail.authresults import Verdict
from mailticketd.mail.parse import IncomingMail
from mailticketd.outbox.mailer import LetterBatch, Mailer
from mailticketd.storage import Store
from mailticketd.tickets.models import Ticket
from mailticketd.tickets.tokens import TokenSigner

# How a ticket reference was found, in order of trust (DESIGN §3).
VIA_TOKEN = "token"
VIA_TAG = "tag"
VIA_REFERENCES = "references"
VIA_WEB = "web"  # written in the web helpdesk by a logged-in person: as good as a reply token

SYSTEM_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})


@dataclass(frozen=True)
class WebOrigin:
    """Who wrote a mail in the web helpdesk, on which ticket, naming which VMs; no SMTP sender can set it."""

    user_id: int
    ticket_number: int | None = None
    vms: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, origin: dict[str, Any] | None) -> WebOrigin | None:
        if not origin:
            return None
        return cls(int(origin["user_id"]), origin.get("ticket"), tuple(origin.get("vms", ())))


@dataclass(frozen=True)
class Envelope:
    """What the SMTP client said, as opposed to what the headers claim."""

    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    web: WebOrigin | None = None

    @property
    def is_bounce(self) -> bool:
        """An empty return path: a delivery report or another automatic mail."""
        return self.mail_from in ("", "<>")


@dataclass(frozen=True)
class Candidate:
    """A ticket the mail refers to, and how the reference was found."""

    ticket: Ticket
    via: str


@dataclass(frozen=True)
class Services:
    """What steps use besides the store: the reply-token signer and the mailer."""

    signer: TokenSigner
    mailer: Mailer


@dataclass
class Context:
    """One mail on its way through the pipeline, and the decisions made about it."""

    inbox_id: int
    envelope: Envelope
    mail: IncomingMail
    visible_text: str
    store: Store
    config: Config
    services: Services
    now: datetime
    new_text: str = ""  # the visible text without the fall-back to the whole mail; what operators send on
    letters: LetterBatch | None = None  # where the steps' letters wait to be written together (the inbox worker)
    # Seconds the steps let the event loop serve others meanwhile (not this mail's cost); only Pipeline.run adds.
    given_away: float = 0.0

    # Decisions, added by the steps in order.
    kind: str = "mail"
    no_auto_reply: str | None = None
    authentication: Verdict | None = None  # our own MTA's Authentication-Results, when configured
    sender: User | None = None
    others: list[User] = field(default_factory=list)
    operator: bool = False
    candidate: Candidate | None = None
    ticket: Ticket | None = None
    follows: Ticket | None = None  # a closed ticket this new one continues
    split: Ticket | None = None  # the ticket an operator's #split made from this one
    reopen: bool = False
    decision: str = ""
    status_change: str | None = None
    unknown_commands: list[str] = field(default_factory=list)
    command_results: list[Any] = field(default_factory=list)  # apply_commands.CommandResult
    failed_recipients: list[str] = field(default_factory=list)
    article_id: int | None = None
    author_status: str = ""
    vm_names: list[str] = field(default_factory=list)
    vms: dict[str, Vm] = field(default_factory=dict)  # the inventory's entries among vm_names (link-vms)
    flags: list[str] = field(default_factory=list)

    @property
    def forged(self) -> bool:
        """Our MTA says the sender's domain disowns this mail (DMARC failed, policy not "none")."""
        return self.authentication is not None and self.authentication.forged

    @property
    def is_operator_address(self) -> bool:
        """The author's address is an operator's (which alone proves nothing)."""
        return self.author_address in self.config.operators.addresses

    @property
    def author_address(self) -> str | None:
        """The author: the ``From`` address, else the envelope sender; never ``Reply-To``."""
        if self.mail.from_ is not None and self.mail.from_.address:
            return self.mail.from_.address
        if not self.envelope.is_bounce:
            return self.envelope.mail_from.strip("<>").lower() or None
        return None

    def is_local_address(self, address: str) -> bool:
        """True for our support addresses, with or without a ``+`` sub-address."""
        return self.config.mail.is_local(address)

    def is_system_address(self, address: str) -> bool:
        """A mailer daemon or postmaster: never a person, never registered as one."""
        return address.partition("@")[0].lower() in SYSTEM_LOCAL_PARTS
