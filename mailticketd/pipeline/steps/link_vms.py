"""Link the VM names a mail mentions to its ticket, flagging what operators must look at."""

from __future__ import annotations

from mailticketd.directory.vms import find_vm_names
from mailticketd.pipeline.context import Context

UNKNOWN_VM = "unknown"
OTHER_ORGANISATION = "other-organisation"


class LinkVms:
    """Extract VM names from the subject and the new text; flag unknown VMs and other organisations' VMs."""

    name = "link-vms"

    async def run(self, ctx: Context) -> None:
        if ctx.ticket is None:
            return
        names = find_vm_names(ctx.config.mail.vm_pattern, ctx.mail.subject, ctx.visible_text)
        if ctx.envelope.web is not None:  # the VMs ticked in the web form
            names = list(dict.fromkeys([*names, *find_vm_names(ctx.config.mail.vm_pattern, *ctx.envelope.web.vms)]))
        if not names:
            return
        inventory = await ctx.store.vms.by_names(names)
        sender_organisation = ctx.sender.organisation_id if ctx.sender else None
        links: list[tuple[str, int | None, tuple[str, ...]]] = []
        for name in names:
            vm = inventory.get(name)
            if vm is None:
                links.append((name, None, (UNKNOWN_VM,)))
            elif vm.organisation_id != sender_organisation and not ctx.operator:
                links.append((name, vm.id, (OTHER_ORGANISATION,)))
            else:
                links.append((name, vm.id, ()))
        await ctx.store.tickets.link_vms(ctx.ticket.id, links)
        ctx.vm_names = names
        ctx.vms = inventory
