"""Carry out an operator's commands: lines of their own at the top of the new text."""

from __future__ import annotations

from mailticketd.pipeline.context import Context

STATUS_COMMANDS = {"#close": "closed", "#pending": "pending", "#open": "open"}
VALID_COMMANDS = ("#note", "#close", "#pending", "#open", "#assign <operator>")


class ApplyCommands:
    """Read ``#note``, ``#close``, ``#pending``, ``#open``, ``#assign``; an unknown command changes nothing."""

    name = "apply-commands"

    async def run(self, ctx: Context) -> None:
        if not ctx.operator or ctx.ticket is None:
            return
        commands, rest = split_commands(ctx.visible_text)
        ctx.kind = "reply"
        ctx.visible_text = rest
        status, assignee, unknown = None, None, []
        for command, argument in commands:
            if command == "#note":
                ctx.kind = "note"
            elif command in STATUS_COMMANDS and not argument:
                status = STATUS_COMMANDS[command]
            elif command == "#assign" and argument.lower() in ctx.config.operators.addresses:
                assignee = argument.lower()
            else:
                unknown.append(f"{command} {argument}".strip())
        if unknown:
            # Nothing is sent and nothing changes; the text stays as an internal note.
            ctx.unknown_commands = unknown
            ctx.kind = "note"
            return
        if assignee:
            await ctx.store.tickets.set_assignee(ctx.ticket.id, assignee)
            ctx.flags.append(f"assigned:{assignee}")
        if status and status != ctx.ticket.status:
            ctx.ticket = await ctx.store.tickets.set_status(ctx.ticket.id, status)
            ctx.status_change = status
        elif ctx.kind == "reply" and ctx.ticket.status == "new":
            ctx.ticket = await ctx.store.tickets.set_status(ctx.ticket.id, "open")


def split_commands(text: str) -> tuple[list[tuple[str, str]], str]:
    """The ``#command argument`` lines at the top of ``text``, and the text after them."""
    lines = text.split("\n")
    commands: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line and not commands:
            index += 1
            continue
        if not line.startswith("#") or len(line) < 2 or not line[1].isalpha():
            break
        word, _, argument = line.partition(" ")
        commands.append((word.lower(), argument.strip()))
        index += 1
    return commands, "\n".join(lines[index:]).strip("\n")
