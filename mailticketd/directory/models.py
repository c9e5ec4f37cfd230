"""The directory's values: organisations, users and VMs as the storage layer returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

# Organisation flags set when a contact leaves and cleared when staff name a replacement.
PRIMARY_CONTACT_LEFT = "primary-contact-left"
MONITORING_CONTACT_LEFT = "monitoring-contact-left"


@dataclass(frozen=True)
class Organisation:
    id: int
    name: str
    primary_contact_id: int | None
    flags: tuple[str, ...] = ()
    created_at: str = ""


@dataclass(frozen=True)
class User:
    id: int
    address: str
    name: str
    organisation_id: int | None
    organisation: str | None
    status: str  # unverified | active | inactive
    role: str  # user | manager
    authorised: bool  # as stored; whether it holds today is policy.is_authorised()
    monitoring_contact: bool
    language: str | None
    authorised_until: str | None = None  # YYYY-MM-DD: a temporary authorisation, valid through that day (UTC)
    authorisation_note: str | None = None  # why a temporary authorisation was granted
    verified_at: str | None = None  # when the person proved the address through a link
    delivery_failure: str | None = None  # the last permanent delivery failure to this address
    phone: str = ""  # how a contact (e.g. the monitoring contact) is reached by phone

    @property
    def is_manager(self) -> bool:
        """A manager of an organisation acts on all of its tickets, while active and authorised.

        The role goes with the authorisation (DESIGN §1): a manager whose
        temporary authorisation has ended is a normal user again from the
        next day (UTC), like ``policy.is_authorised``, without anyone acting.
        """
        if self.role != "manager" or self.status != "active" or self.organisation_id is None or not self.authorised:
            return False
        today = datetime.now(timezone.utc).date().isoformat()
        return self.authorised_until is None or today <= self.authorised_until

    @property
    def is_temporary(self) -> bool:
        """Authorised only until a date (the register-extract case)."""
        return self.authorised and self.authorised_until is not None


@dataclass(frozen=True)
class Vm:
    id: int
    name: str
    organisation_id: int
    organisation: str
