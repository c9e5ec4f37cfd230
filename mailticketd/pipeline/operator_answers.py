"""What an operator's mail causes: the answer and status mails to customers, and the operator's own receipts."""

from __future__ import annotations

from typing import Any

from mailticketd.outbox.mailer import Letter
from mailticketd.pipeline.context import Context
from mailticketd.pipeline.letters import customers, language, person, send
from mailticketd.pipeline.steps.apply_commands import VALID_COMMANDS


async def answer_operator(ctx: Context, ticket: dict[str, Any]) -> None:
    assert ctx.ticket is not None and ctx.author_address is not None
    if "no-new-text-found" in ctx.flags:
        await send(ctx, Letter("command-error", "nothing_sent", ctx.author_address, {"ticket": ticket},
                               ctx.config.mail.default_language))
        return
    context: dict[str, Any]
    if ctx.unknown_commands:
        context = {"ticket": ticket, "unknown": ctx.unknown_commands, "valid": list(VALID_COMMANDS)}
        await send(ctx, Letter("command-error", "command_error", ctx.author_address, context,
                               ctx.config.mail.default_language))
        return
    if ctx.command_results:
        results = [{"command": r.command, "argument": r.argument, "error": r.error, "code": r.code,
                    "params": dict(r.params)} for r in ctx.command_results]
        context = {"ticket": ticket, "results": results, "done": not any(r.error for r in ctx.command_results)}
        await send(ctx, Letter("command-result", "command_result", ctx.author_address, context,
                               ctx.config.mail.default_language))
        if not context["done"]:
            return
    receivers = await customers(ctx)
    if ctx.kind == "reply" and ctx.visible_text.strip():
        for user in receivers:
            context = {"ticket": ticket, "recipient": person(user), "text": ctx.visible_text}
            await send(ctx, Letter("reply", "reply", user.address, context, language(ctx, user), user.name))
    if ctx.status_change in ("closed", "pending"):
        for user in receivers:
            context = {"ticket": ticket, "recipient": person(user), "status": ctx.status_change,
                       "reopen_days": int(ctx.config.tickets.reopen_window_days)}
            await send(ctx, Letter("status", "status", user.address, context, language(ctx, user), user.name))
    if ctx.split is not None:  # the customers learn the new ticket's tag in a mail of its thread
        new = ctx.services.mailer.ticket_context(ctx.split, ticket["organisation"])
        for user in receivers:
            context = {"ticket": new, "from_ticket": ticket, "recipient": person(user)}
            await send(ctx, Letter("split", "split", user.address, context, language(ctx, user), user.name),
                                   ctx.split)
