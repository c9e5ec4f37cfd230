"""Turn stored state into the plain dicts that ``--json`` prints and the tables show.

These shapes are a stable interface for admins' scripts: add keys, never rename or drop them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.directory.models import Organisation, User, Vm
from mailticketd.directory.policy import expires_soon, has_expired, is_authorised, standing
from mailticketd.storage import Store
from mailticketd.storage.audit import AuditEntry
from mailticketd.storage.inbox import InboxRow
from mailticketd.storage.tickets import ArticleView, TicketSummary
from mailticketd.tickets.tags import format_tag


def ticket_view(config: Config, ticket: TicketSummary) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "tag": format_tag(config.mail.tag_prefix, ticket.number),
        "subject": ticket.subject,
        "status": ticket.status,
        "organisation": ticket.organisation,
        "requester": ticket.requester,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "closed_at": ticket.closed_at,
        "assignee": ticket.assignee,
        "follows": ticket.follows,
    }


async def tickets_view(config: Config, store: Store) -> list[dict[str, Any]]:
    return [ticket_view(config, ticket) for ticket in await store.tickets.list()]


async def ticket_detail_view(config: Config, store: Store, number: int) -> dict[str, Any] | None:
    summary = await store.tickets.summary(number)
    ticket = await store.tickets.by_number(number)
    if summary is None or ticket is None:
        return None
    view = ticket_view(config, summary)
    view["participants"] = [
        {"address": p.address, "status": p.status, "role": p.role, "organisation": p.organisation}
        for p in await store.tickets.participants(ticket.id)
    ]
    view["vms"] = [
        {"name": vm.name, "organisation": vm.organisation, "flags": list(vm.flags)}
        for vm in await store.tickets.vms(ticket.id)
    ]
    view["articles"] = [_article_view(article) for article in await store.articles.for_ticket(ticket.id)]
    return view


def _article_view(article: ArticleView) -> dict[str, Any]:
    return {
        "id": article.id,
        "author": article.author,
        "author_status": article.author_status,
        "kind": article.kind,
        "subject": article.subject,
        "message_id": article.message_id,
        "created_at": article.created_at,
        "flags": list(article.flags),
        "visible_text": article.visible_text,
        "text": article.text,
        "attachments": [
            {"name": a.name, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
            for a in article.attachments
        ],
    }


def user_view(user: User, now: datetime | None = None) -> dict[str, Any]:
    """``authorised`` is whether the user is an authorised contact at ``now``: a temporary authorisation ends,
    and the manager role with it.  ``standing`` is the one word operator notices use for the person."""
    now = now or utc_now()
    return {
        "address": user.address,
        "name": user.name,
        "status": user.status,
        "organisation": user.organisation,
        "role": "manager" if user.role == "manager" and is_authorised(user, now) else "user",
        "authorised": is_authorised(user, now),
        "monitoring_contact": user.monitoring_contact,
        "language": user.language,
        "authorised_until": user.authorised_until,
        "authorisation_note": user.authorisation_note,
        "verified": user.verified_at is not None,
        "delivery_failure": user.delivery_failure,
        "phone": user.phone,
        "standing": standing(user, now),
    }


async def users_view(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    return [user_view(user, now) for user in await store.users.list()]


async def organisation_view(store: Store, organisation: Organisation, now: datetime) -> dict[str, Any]:
    """An organisation with its members, contacts, VMs, flags, and the warnings staff should act on."""
    members = await store.users.members(organisation.id)
    present = [user for user in members if user.status != "inactive"]
    primary = next((user for user in members if user.id == organisation.primary_contact_id), None)
    authorised = [user.address for user in present if is_authorised(user, now)]
    monitoring = [user.address for user in present if user.monitoring_contact]
    warnings = list(organisation.flags)
    if primary is None:
        warnings.append("no-primary-contact")
    elif primary.status == "inactive":
        warnings.append(f"primary-contact-inactive:{primary.address}")
    elif await store.users.undeliverable(primary.id):
        warnings.append(f"primary-contact-undeliverable:{primary.address}")
    if not authorised:
        warnings.append("no-authorised-contact")
    if not monitoring:
        warnings.append("no-monitoring-contact")
    for user in present:
        if expires_soon(user, now):
            warnings.append(f"temporary-authorisation-expires:{user.address}:{user.authorised_until}")
        elif has_expired(user, now):
            warnings.append(f"temporary-authorisation-expired:{user.address}:{user.authorised_until}")
    return {
        "name": organisation.name,
        "created_at": organisation.created_at,
        "primary_contact": primary.address if primary else None,
        "authorised_contacts": authorised,
        "monitoring_contacts": monitoring,
        "managers": [user.address for user in present if user.role == "manager" and is_authorised(user, now)],
        "monitoring_details": [{"address": user.address, "name": user.name, "phone": user.phone}
                               for user in present if user.monitoring_contact],
        "temporary_authorisations": [{"address": user.address, "until": user.authorised_until}
                                     for user in present if user.is_temporary and is_authorised(user, now)],
        "members": [user_view(user, now) | {"primary_contact": user.id == organisation.primary_contact_id}
                    for user in members],
        "vms": [vm.name for vm in await store.vms.list(organisation.id)],
        "flags": list(organisation.flags),
        "warnings": warnings,
    }


async def organisations_view(store: Store, now: datetime) -> list[dict[str, Any]]:
    return [await organisation_view(store, organisation, now) for organisation in await store.organisations.list()]


def vm_view(vm: Vm) -> dict[str, Any]:
    return {"name": vm.name, "organisation": vm.organisation}


async def vms_view(store: Store, organisation_id: int | None = None) -> list[dict[str, Any]]:
    return [vm_view(vm) for vm in await store.vms.list(organisation_id)]


def audit_entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action, "subject": entry.subject,
            "before": entry.before, "after": entry.after, "request": entry.request}


async def audit_view(store: Store, subject: str | None = None) -> list[dict[str, Any]]:
    return [audit_entry_view(entry) for entry in await store.audit.list(subject)]


def inbox_row_view(row: InboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "reason": row.reason,
        "received_at": row.received_at,
        "mail_from": row.mail_from,
        "rcpt_tos": list(row.rcpt_tos),
        "message_id": row.message_id,
        "size": row.size,
        "attempts": row.attempts,
        "decision": row.decision,
        "ticket": row.ticket_number,
    }


async def inbox_view(store: Store, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return [inbox_row_view(row) for row in await store.inbox.list(statuses)]
