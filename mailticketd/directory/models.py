"""The directory's values: organisations, users and VMs as the storage layer returns them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Organisation:
    id: int
    name: str
    primary_contact_id: int | None


@dataclass(frozen=True)
class User:
    id: int
    address: str
    name: str
    organisation_id: int | None
    organisation: str | None
    status: str  # unverified | active | inactive
    role: str  # user | manager
    authorised: bool
    monitoring_contact: bool
    language: str | None

    @property
    def is_manager(self) -> bool:
        """A manager of an organisation acts on all of its tickets, while active."""
        return self.role == "manager" and self.status == "active" and self.organisation_id is not None


@dataclass(frozen=True)
class Vm:
    id: int
    name: str
    organisation_id: int
    organisation: str
