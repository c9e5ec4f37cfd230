"""``#split``: copy a customer's mail that raised a second topic into a ticket of its own."""

from __future__ import annotations

from mailticketd.storage import Store
from mailticketd.tickets.models import Ticket


async def split_off(store: Store, ticket: Ticket, subject: str, *, first_number: int) -> Ticket | None:
    """A new ticket for the same participants with a copy of the latest customer mail; None when there is none.

    The copy carries ``split-from:<number>``; the caller marks its own article ``split-into:<new number>``, so
    both tickets mention each other.
    """
    article_id = await store.articles.last_customer_mail(ticket.id)
    if article_id is None:
        return None
    new = await store.tickets.create(first_number=first_number, subject=subject or ticket.subject,
                                     organisation_id=ticket.organisation_id, requester_id=ticket.requester_id)
    await store.tickets.copy_members(ticket.id, new.id)
    await store.articles.copy_to(article_id, new.id, [f"split-from:{ticket.number}"])
    return new
