"""Check a new ticket against the helpdesk's rules for a good request: a meaningful subject, a VM, one topic."""

from __future__ import annotations

import re
from typing import Any

from mailticketd.pipeline.context import Context
from mailticketd.tickets.subjects import is_generic
from mailticketd.tickets.tags import strip_tags

GENERIC_SUBJECT = "generic-subject"
NO_VM_NAMED = "no-vm-named"
SEVERAL_TOPICS = "several-topics"
# Lines that start an item of a list: "- ", "* ", "• ", "1. ", "2) ".
_ITEM = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+\S", re.MULTILINE)
# VM names listed for a manager in the hint; an organisation with more gets the first ones.
_LISTED_VMS = 30


class CheckRequest:
    """Flag a customer's new ticket whose subject says nothing, that names no VM, or that mixes topics."""

    name = "check-request"

    async def run(self, ctx: Context) -> None:
        if ctx.ticket is None or ctx.decision != "new" or ctx.kind != "mail" or ctx.operator:
            return
        before = len(ctx.flags)
        await self._check(ctx)
        if len(ctx.flags) > before and ctx.article_id is not None:
            await ctx.store.articles.set_flags(ctx.article_id, ctx.flags)

    async def _check(self, ctx: Context) -> None:
        assert ctx.ticket is not None
        if is_generic(strip_tags(ctx.config.mail.tag_prefix, ctx.mail.subject)):
            ctx.flags.append(GENERIC_SUBJECT)
        organisation_id = ctx.ticket.organisation_id
        if not ctx.vm_names:
            if organisation_id is not None and await ctx.store.vms.list(organisation_id):
                ctx.flags.append(NO_VM_NAMED)
            return
        owners = {vm.organisation_id for vm in ctx.vms.values()}
        if len(owners) > 1 or (len(ctx.vm_names) > 1 and distinct_requests(ctx.visible_text) > 1):
            ctx.flags.append(SEVERAL_TOPICS)


async def hints(ctx: Context) -> dict[str, Any]:
    """What the acknowledgement suggests for the flags this step set (empty when all is well)."""
    found: dict[str, Any] = {}
    if GENERIC_SUBJECT in ctx.flags:
        found["subject"] = strip_tags(ctx.config.mail.tag_prefix, ctx.mail.subject)
    if NO_VM_NAMED in ctx.flags:
        found["vm_scheme"] = ctx.config.mail.vm_scheme
        sender = ctx.sender
        # A manager may see the organisation's inventory; anyone else learns only the scheme.
        if sender is not None and sender.is_manager and sender.organisation_id is not None:
            found["vms"] = [vm.name for vm in await ctx.store.vms.list(sender.organisation_id)][:_LISTED_VMS]
    if SEVERAL_TOPICS in ctx.flags:
        found["topics"] = True
    return found


def distinct_requests(text: str) -> int:
    """How many requests a text seems to make: items of a list, else paragraphs that ask a question."""
    items = len(_ITEM.findall(text))
    if items > 1:
        return items
    paragraphs = [block for block in re.split(r"\n\s*\n", text) if "?" in block]
    return len(paragraphs)
