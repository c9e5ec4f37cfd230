"""Carry out an operator's commands: lines of their own at the top of the new text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import Organisation, User
from mailticketd.directory.policy import is_authorised
from mailticketd.pipeline.context import Context
from mailticketd.tickets.split import split_off

STATUS_COMMANDS = {"#close": "closed", "#pending": "pending", "#open": "open"}
# Requests of the ticket's organisation that operators carry out by mail, as the staff CLI would; only if the
# ticket's requester is an authorised contact of it, unless the operator adds "!" (``#primary! addr``).
DIRECTORY_COMMANDS = ("#primary", "#authorise", "#adduser", "#monitoring", "#left")
OVERRIDE = "!"
VALID_COMMANDS = ("#note", "#close", "#pending", "#open", "#assign <operator>", "#split <subject>",
                  "#primary <address>", "#authorise <address>", "#adduser <address>",
                  "#monitoring <address> [<phone>] [<name>]", "#left <address>",
                  "#primary! <address> (and so on: even if the requester is not authorised)")
# The phone number after a monitoring contact's address; the rest of the line is the name.
_PHONE = re.compile(r"^[+(0-9][0-9 ()/.-]{2,39}(?=\s|$)")


@dataclass(frozen=True)
class CommandResult:
    command: str
    argument: str
    error: str | None  # the refusal, worded as the CLI words it; None when done


class ApplyCommands:
    """Read the status, assignment and directory commands; an unknown or refused command changes nothing."""

    name = "apply-commands"

    async def run(self, ctx: Context) -> None:
        if not ctx.operator or ctx.ticket is None or ctx.kind != "mail":
            return  # an operator's out-of-office reply is stored, never passed on
        # Only text the operator newly wrote goes on to customers: never the quoted notice.
        commands, rest = split_commands(ctx.new_text)
        ctx.kind = "reply"
        ctx.visible_text = rest
        if not commands and not rest.strip():
            ctx.kind = "note"
            ctx.flags.append("no-new-text-found")
            return
        status, assignee, unknown, directory = None, None, [], []
        split: str | None = None
        for command, argument in commands:
            if command == "#note":
                ctx.kind = "note"
            elif command == "#split":
                split = argument
            elif command in STATUS_COMMANDS and not argument:
                status = STATUS_COMMANDS[command]
            elif command == "#assign" and argument.lower() in ctx.config.operators.addresses:
                assignee = argument.lower()
            elif command.removesuffix(OVERRIDE) in DIRECTORY_COMMANDS and argument:
                directory.append((command, argument))
            else:
                unknown.append(f"{command} {argument}".strip())
        if unknown:
            # Nothing is sent and nothing changes; the text stays as an internal note.
            ctx.unknown_commands = unknown
            ctx.kind = "note"
            return
        if directory and not await _directory(ctx, directory):
            ctx.kind = "note"
            return
        if split is not None:
            ctx.split = await split_off(ctx.store, ctx.ticket, split, first_number=ctx.config.tickets.first_number)
            if ctx.split is None:  # no customer mail to take along
                ctx.unknown_commands = [f"#split {split}".strip()]
                ctx.kind = "note"
                return
            ctx.flags.append(f"split-into:{ctx.split.number}")
        if assignee:
            await ctx.store.tickets.set_assignee(ctx.ticket.id, assignee)
            ctx.flags.append(f"assigned:{assignee}")
        if status and status != ctx.ticket.status:
            ctx.ticket = await ctx.store.tickets.set_status(ctx.ticket.id, status)
            ctx.status_change = status
        elif ctx.kind == "reply" and ctx.ticket.status == "new":
            ctx.ticket = await ctx.store.tickets.set_status(ctx.ticket.id, "open")


async def _directory(ctx: Context, commands: list[tuple[str, str]]) -> bool:
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
                        raise AdminError(f"ticket {ctx.ticket.number} belongs to no organisation")
                    admin.request = _requested(ctx, command, argument, requester, organisation)
                    await _carry_out(admin, command.removesuffix(OVERRIDE), argument, organisation.name)
                except AdminError as refusal:
                    error = str(refusal)
                results.append(CommandResult(command, argument, error))
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
                         f"(e.g. by phone), write '{command}{OVERRIDE} {argument}' to carry it out anyway")
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
            raise AdminError(f"user {user.address!r} is not a member of {organisation!r}")
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


def split_commands(text: str) -> tuple[list[tuple[str, str]], str]:
    """The ``#command argument`` lines at the top and at the bottom of ``text``, and the text between them.

    Operators write commands above their answer or under it (``#close`` as the last line); a ``#`` inside the
    text is text.
    """
    lines = text.split("\n")
    commands: list[tuple[str, str]] = []
    start = 0
    while start < len(lines) and ((top := _command(lines[start])) or not lines[start].strip()):
        commands += [top] if top else []
        start += 1
    end = len(lines)
    bottom: list[tuple[str, str]] = []
    while end > start and ((last := _command(lines[end - 1])) or not lines[end - 1].strip()):
        bottom[:0] = [last] if last else []
        end -= 1
    return commands + bottom, "\n".join(lines[start:end]).strip("\n")


def _command(line: str) -> tuple[str, str] | None:
    """``("#close", "")`` for a line that is a command, None for text."""
    line = line.strip()
    if not line.startswith("#") or len(line) < 2 or not line[1].isalpha():
        return None
    word, _, argument = line.partition(" ")
    return word.lower(), argument.strip()
