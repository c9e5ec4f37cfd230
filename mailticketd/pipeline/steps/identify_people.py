"""Identify the author and the other addressees; register the unknown ones as unverified users."""

from __future__ import annotations

from mailticketd.mail.parse import Address
from mailticketd.pipeline.context import Context


class IdentifyPeople:
    """Find or register the sender and every CC (and further To) address a person wrote to."""

    name = "identify-people"

    async def run(self, ctx: Context) -> None:
        if ctx.envelope.web is not None:
            # The logged-in person is the author, whatever the composed headers say; a web form has no CC.
            ctx.sender = (await ctx.store.users.by_ids([ctx.envelope.web.user_id])).get(ctx.envelope.web.user_id)
            return
        author = ctx.author_address
        operators = set(ctx.config.operators.addresses)
        others = _other_addresses(ctx, author, operators)
        known = await ctx.store.users.by_addresses([*others, *([author] if author else [])])

        if author and author not in known and _registrable(ctx, author) and author not in operators:
            name = ctx.mail.from_.name if ctx.mail.from_ else ""
            known[author] = await ctx.store.users.create(author, name=name)
        ctx.sender = known.get(author) if author else None

        register = ctx.config.mail.register_cc and ctx.kind == "mail"
        for address, name in others.items():
            if address not in known and register:
                known[address] = await ctx.store.users.create(address, name=name)
            if address in known:
                ctx.others.append(known[address])


def _registrable(ctx: Context, address: str) -> bool:
    return not ctx.is_system_address(address) and not ctx.is_local_address(address)


def _other_addresses(ctx: Context, author: str | None, operators: set[str]) -> dict[str, str]:
    """CC and To addresses other than ours, the operators' and the author's, with display names."""
    found: dict[str, str] = {}
    addressees: tuple[Address, ...] = (*ctx.mail.to, *ctx.mail.cc)
    for entry in addressees:
        address = entry.address
        if not address or "@" not in address or address == author or address in operators:
            continue
        if ctx.is_local_address(address) or ctx.is_system_address(address):
            continue
        found.setdefault(address, entry.name)
    return found
