"""Turn stored state into the plain dicts that ``--json`` prints and the tables show.

These shapes are a stable interface for admins' scripts: add keys, never rename or drop them.
"""

from __future__ import annotations

from typing import Any

from mailticketd.config import Config
from mailticketd.directory.models import User
from mailticketd.storage import Store
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


def user_view(user: User) -> dict[str, Any]:
    return {
        "address": user.address,
        "name": user.name,
        "status": user.status,
        "organisation": user.organisation,
        "role": user.role,
        "authorised": user.authorised,
        "monitoring_contact": user.monitoring_contact,
        "language": user.language,
    }


async def users_view(store: Store) -> list[dict[str, Any]]:
    return [user_view(user) for user in await store.users.list()]


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
