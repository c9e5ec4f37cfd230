"""Carry out an operator's commands: lines of their own at the top of the new text."""

from __future__ import annotations

from dataclasses import dataclass

from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.pipeline.context import Context
from mailticketd.tickets.split import split_off

STATUS_COMMANDS = {"#close": "closed", "#pending": "pending", "#open": "open"}
# Requests of the ticket's organisation that operators carry out by mail, as the staff CLI would.
DIRECTORY_COMMANDS = ("#primary", "#authorise", "#adduser", "#monitoring", "#left")
VALID_COMMANDS = ("#note", "#close", "#pending", "#open", "#assign <operator>", "#split <subject>", "#primary <address>",
                  "#authorise <address>", "#adduser <address>", "#monitoring <address>", "#left <address>")


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
            elif command in DIRECTORY_COMMANDS and argument:
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
    admin = DirectoryAdmin(ctx.store, ctx.config, ctx.services.mailer, actor=ctx.author_address, now=ctx.now)
    results: list[CommandResult] = []
    try:
        async with ctx.store.savepoint("operator_commands"):
            for command, argument in commands:
                error = None
                try:
                    if organisation is None:
                        raise AdminError(f"ticket {ctx.ticket.number} belongs to no organisation")
                    await _carry_out(admin, command, argument, organisation.name)
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


async def _carry_out(admin: DirectoryAdmin, command: str, address: str, organisation: str) -> None:
    if command == "#primary":
        await admin.set_primary_contact(organisation, address)
    elif command in ("#authorise", "#monitoring", "#left"):
        user = await admin.user(address)
        if user.organisation != organisation:
            raise AdminError(f"user {user.address!r} is not a member of {organisation!r}")
        if command == "#authorise":
            await admin.authorise(address)
        elif command == "#monitoring":
            await admin.set_monitoring_contact(address, True)
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
