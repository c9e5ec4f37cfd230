"""Decide who is told what about this mail, and queue those mails in the outbox (the last step)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mailticketd.directory.models import User
from mailticketd.directory.policy import author_status
from mailticketd.directory.representation import representation
from mailticketd.directory.verification import issue_verification, login_url, verification_url
from mailticketd.mail.authresults import sender_check
from mailticketd.pipeline.context import Context
from mailticketd.pipeline.letters import customers, language, person, send
from mailticketd.pipeline.operator_answers import answer_operator
from mailticketd.pipeline.steps.check_request import hints
from mailticketd.outbox.mailer import AUTO_REPLIED, Letter

# Automatic answers to a sender, limited per address and hour (DESIGN §4).
AUTOMATIC_KINDS = ("ack", "command-error", "notice")


class PlanNotifications:
    """Tell operators of customer mail, customers of operator replies and status changes, senders of new tickets."""

    name = "plan-notifications"

    async def run(self, ctx: Context) -> None:
        if ctx.ticket is None:
            return
        summary = await ctx.store.tickets.summary(ctx.ticket.number)
        ticket = ctx.services.mailer.ticket_context(ctx.ticket, summary.organisation if summary else None)
        customer_mail = not ctx.operator and ctx.kind == "mail"
        ticket["representation"] = await representation(
            ctx.store, ctx.ticket.organisation_id if customer_mail else None, ctx.now)
        if ctx.operator:
            if ctx.kind in ("reply", "note"):
                await answer_operator(ctx, ticket)
        elif ctx.kind == "bounce":
            await _tell_operators(ctx, ticket, "bounce")
        elif ctx.kind == "mail":
            await _tell_operators(ctx, ticket, "new" if ctx.decision == "new" else "reply")
            if ctx.sender is not None and ctx.sender.status == "inactive":
                await _not_enabled(ctx, ticket, ctx.sender)
            elif ctx.decision == "new":
                await _acknowledge(ctx, ticket)
                await _copy_primary_contact(ctx, ticket)


async def _tell_operators(ctx: Context, ticket: dict[str, Any], event: str) -> None:
    assert ctx.ticket is not None
    vms = [{"name": vm.name, "organisation": vm.organisation, "flags": list(vm.flags)}
           for vm in await ctx.store.tickets.vms(ctx.ticket.id) if vm.name in ctx.vm_names]
    context = {"ticket": ticket, "event": event, "author": ctx.author_address, "vms": vms,
               "author_status": ctx.author_status, "flags": list(ctx.flags), "text": ctx.visible_text,
               "via_web": ctx.envelope.web is not None, "tag_prefix": ctx.config.mail.tag_prefix,
               "sender_check": sender_check(ctx.authentication, ctx.author_address),
               "recipients": [{"address": user.address, "name": user.name,
                               "status": author_status(user, ctx.ticket.organisation_id, operator=False, now=ctx.now)}
                              for user in await customers(ctx)],
               "former_organisation": ctx.sender.organisation if ctx.sender and ctx.sender.status == "inactive"
               else None,
               "attachments": [{"name": a.name, "size": a.size} for a in ctx.mail.attachments]}
    for operator in ctx.config.operators.addresses:
        if operator != ctx.author_address:
            await send(ctx, Letter("operator-notice", "operator_notice", operator, context,
                                   ctx.config.mail.default_language))


async def _acknowledge(ctx: Context, ticket: dict[str, Any]) -> None:
    sender = ctx.sender
    if sender is None or ctx.no_auto_reply or sender.status == "inactive":
        return
    if not await _may_answer(ctx, sender.address):
        return
    hours = ctx.config.http.verification_hours
    url = None
    if sender.status == "unverified":
        token = await issue_verification(ctx.store, sender.id, hours=hours, now=ctx.now)
        url = verification_url(ctx.config.http.base_url, token)
    context: dict[str, Any] = {"ticket": ticket, "recipient": person(sender), "verification_url": url,
                               "verification_hours": hours, "login_url": login_url(ctx.config.http.base_url),
                               "hints": await hints(ctx),
                               # a member of an organisation nobody may instruct for learns how to change that
                               "no_authorised_contact": ticket["representation"]["unrepresented"]
                               and ctx.ticket is not None and sender.organisation_id == ctx.ticket.organisation_id}
    await send(ctx, Letter("ack", "ack", sender.address, context, language(ctx, sender), sender.name,
                           AUTO_REPLIED))


async def _not_enabled(ctx: Context, ticket: dict[str, Any], sender: User) -> None:
    """A user who left is told neutrally that the address is not enabled; the mail itself is kept."""
    if ctx.no_auto_reply or not await _may_answer(ctx, sender.address):
        return
    context = {"ticket": ticket, "recipient": person(sender)}
    await send(ctx, Letter("notice", "not_enabled", sender.address, context, language(ctx, sender), sender.name,
                           AUTO_REPLIED))


async def _copy_primary_contact(ctx: Context, ticket: dict[str, Any]) -> None:
    """The organisation's primary contact, the first to receive what the provider sends, gets a copy of each new
    ticket, whatever their role."""
    if not ctx.config.notify.primary_contact_copies or ctx.ticket is None or ctx.ticket.organisation_id is None:
        return
    organisation = await ctx.store.organisations.by_id(ctx.ticket.organisation_id)
    if organisation is None or organisation.primary_contact_id is None:
        return
    contact = (await ctx.store.users.by_ids([organisation.primary_contact_id])).get(organisation.primary_contact_id)
    if contact is None or contact.status == "inactive" or contact.organisation_id != organisation.id:
        return
    if contact.id == (ctx.sender.id if ctx.sender else None):
        return
    context = {"ticket": ticket, "recipient": person(contact), "author": ctx.author_address,
               "text": ctx.visible_text}
    await send(ctx, Letter("copy", "copy", contact.address, context, language(ctx, contact), contact.name))


async def _may_answer(ctx: Context, address: str) -> bool:
    """At most ``max_auto_replies_per_hour`` automatic answers to one address."""
    since = ctx.now - timedelta(hours=1)
    sent = await ctx.store.outbox.count_recent(address, AUTOMATIC_KINDS, since)
    if sent >= ctx.config.notify.max_auto_replies_per_hour:
        ctx.flags.append("auto-reply-limit-reached")
        return False
    return True
