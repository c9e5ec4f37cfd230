"""Carry out an operator's commands: lines of their own at the top or the bottom of the new text."""

from __future__ import annotations

from mailticketd.pipeline.commands import split_commands
from mailticketd.pipeline.context import Context
from mailticketd.pipeline.requests import DIRECTORY_COMMANDS, OVERRIDE, carry_out_requests
from mailticketd.tickets.split import split_off

STATUS_COMMANDS = {"#close": "closed", "#pending": "pending", "#open": "open"}
VALID_COMMANDS = ("#note", "#close", "#pending", "#open", "#assign <operator>", "#split <subject>",
                  "#primary <address>", "#authorise <address>", "#adduser <address>",
                  "#monitoring <address> [<phone>] [<name>]", "#left <address>",
                  "#primary! <address> (and so on: even if the requester is not authorised)")


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
        if directory and not await carry_out_requests(ctx, directory):
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
