"""Carry out the organisation's requests that operators give by mail: all of a mail's requests, or none.

A request (``#adduser``, ``#primary``, ``#authorise``, ``#monitoring``,
``#left``) runs through the staff's own ``DirectoryAdmin`` for the ticket's
organisation, only if the ticket's requester is an authorised contact of it
or the operator overrides with ``!`` (``#primary! addr``); the audit entry
names the ticket, the requester and the override.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import Organisation, User
from mailticketd.directory.policy import is_authorised
from mailticketd.pipeline.context import Context

# Requests of the ticket's organisation that operators carry out by mail, as the staff CLI would; only if the
# ticket's requester is an authorised contact of it, unless the operator adds "!" (``#primary! addr``).
DIRECTORY_COMMANDS = ("#primary", "#authorise", "#adduser", "#monitoring", "#left")
OVERRIDE = "!"
# The phone number after a monitoring contact's address; the rest of the line is the name.
_PHONE = re.compile(r"^[+(0-9][0-9 ()/.-]{2,39}(?=\s|$)")


@dataclass(frozen=True)
class CommandResult:
    command: str
    argument: str
    error: str | None  # the refusal, worded as the CLI words it; None when done
    code: str = ""  # the refusal's kind, for the operator's language (templates/<lang>/_errors.txt)
    params: Mapping[str, str] = field(default_factory=dict)


async def carry_out_requests(ctx: Context, commands: list[tuple[str, str]]) -> bool:
    """Carry out all directory commands for the ticket's organisation, or none; False when one was refused."""
    assert ctx.ticket is not None and ctx.author_address is not None
    organisation = (await ctx.store.organisations.by_id(ctx.ticket.organisation_id)
                    if ctx.ticket.organisation_id else None)
    requester_id = ctx.ticket.requester_id
    requester = (await ctx.store.users.by_ids([requester_id])).get(requester_id) if requester_id else None
    admin = DirectoryAdmin(ctx.store, ctx.config, ctx.services.mailer, actor=ctx.author_address, now=ctx.now)
    results: list[CommandResult] = []
    try:
        async with ctx.store.savepoint("operator_commands"):
            for command, argument in commands:
                error = None
                try:
                    if organisation is None:
                        raise AdminError(f"ticket {ctx.ticket.number} belongs to no organisation", "ticket-without-organisation",
                                         ticket=str(ctx.ticket.number))
                    admin.request = _requested(ctx, command, argument, requester, organisation)
                    await _carry_out(admin, command.removesuffix(OVERRIDE), argument, organisation.name)
                except AdminError as refusal:
                    results.append(CommandResult(command, argument, str(refusal), refusal.code, refusal.params))
                    continue
                results.append(CommandResult(command, argument, None))
            if any(result.error for result in results):
                raise AdminError("refused")  # undo the commands that went through
    except AdminError:
        ctx.command_results = results
        return False
    ctx.command_results = results
    ctx.flags += [f"done:{result.command} {result.argument}" for result in results]
    return True


def _requested(ctx: Context, command: str, argument: str, requester: User | None,
               organisation: Organisation) -> dict[str, object]:
    """What the audit entry records about the request; refused unless its requester is authorised or the operator
    overrides with ``!``."""
    assert ctx.ticket is not None
    authorised = (requester is not None and requester.organisation_id == organisation.id
                  and is_authorised(requester, ctx.now))
    override = command.endswith(OVERRIDE)
    if not authorised and not override:
        who = f"{requester.address!r}" if requester is not None else "unknown"
        raise AdminError(f"the ticket's requester {who} is not an authorised contact of {organisation.name!r}, "
                         "and only an authorised contact may ask for this: if the request is confirmed otherwise "
                         f"(e.g. by phone), write '{command}{OVERRIDE} {argument}' to carry it out anyway",
                         "requester-not-authorised", requester=requester.address if requester else "",
                         organisation=organisation.name, override=f"{command}{OVERRIDE} {argument}")
    return {"ticket": ctx.ticket.number, "tag": ctx.services.mailer.tag(ctx.ticket),
            "requester": requester.address if requester is not None else None,
            "requester_authorised": authorised, "override": not authorised}


async def _carry_out(admin: DirectoryAdmin, command: str, argument: str, organisation: str) -> None:
    address, details = argument, ""
    if command == "#monitoring":
        address, _, details = argument.partition(" ")
    if command == "#primary":
        await admin.set_primary_contact(organisation, address)
    elif command in ("#authorise", "#monitoring", "#left"):
        user = await admin.user(address)
        if user.organisation != organisation:
            raise AdminError(f"user {user.address!r} is not a member of {organisation!r}", "not-member",
                             address=user.address, organisation=organisation)
        if command == "#authorise":
            await admin.authorise(address)
        elif command == "#monitoring":  # "#monitoring <address> [<phone>] [<name>]"
            phone = _PHONE.match(details.strip())
            name = details.strip()[phone.end():] if phone else details
            await admin.set_monitoring_contact(address, True, name=name.strip() or None,
                                               phone=phone.group(0).strip() if phone else None)
        else:  # the person left: inactive, logged out, replacements asked for
            await admin.deactivate(address)
    else:
        known = await admin.store.users.by_address(address)
        if known is not None and known.organisation_id is None:
            await admin.assign_user(address, organisation)
        else:
            await admin.add_user(address, organisation)
