"""Match a delivery report to the outgoing mail it reports on, and flag the address that failed."""

from __future__ import annotations

import re

from mailticketd.pipeline.context import Context

BOUNCE = "bounce"
_REPORT_TYPES = ("message/rfc822", "message/delivery-status", "text/rfc822-headers", "message/rfc822-headers",
                 "message/global", "message/global-headers", "message/global-delivery-status")
_MESSAGE_ID = re.compile(r"^\s*message-id:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
_FINAL_RECIPIENT = re.compile(r"^\s*(?:final|original)-recipient:\s*(?:rfc822;)?\s*<?([^\s<>;]+@[^\s<>;]+)>?",
                              re.IGNORECASE | re.MULTILINE)
_ACTION_FAILED = re.compile(r"^\s*action:\s*failed", re.IGNORECASE | re.MULTILINE)


class MatchBounce:
    """A bounce of our own mail becomes an internal note on that mail's ticket; it is never answered."""

    name = "match-bounce"

    async def run(self, ctx: Context) -> None:
        # A report comes with an empty return path; anything else naming our Message-ID is not one.
        if ctx.kind != BOUNCE or not ctx.envelope.is_bounce:
            return
        reports = [item.content.decode("utf-8", "replace") for item in ctx.mail.attachments
                   if item.content_type.lower() in _REPORT_TYPES]
        texts = [*reports, ctx.mail.text]
        message_ids = [match for text in texts for match in _MESSAGE_ID.findall(text)]
        found = await ctx.store.tickets.ticket_of_outgoing(list(dict.fromkeys(message_ids)))
        if found is None:
            return
        ticket = await ctx.store.tickets.by_id(found[0])
        if ticket is None:
            return
        ctx.ticket = ticket
        ctx.decision = BOUNCE
        ctx.flags.append(f"bounce-of:{found[1]}")
        # Only an address the reported mail really went to can be flagged as failing.
        sent_to = set(await ctx.store.outbox.recipients_of(found[1]))
        for address in _failed_recipients(ctx, reports):
            if address not in sent_to:
                continue
            ctx.failed_recipients.append(address)
            ctx.flags.append(f"delivery-failed:{address}")
            await ctx.store.users.mark_delivery_failed(address, _first_line(ctx.mail.subject))


def _failed_recipients(ctx: Context, reports: list[str]) -> list[str]:
    found = [value.strip().lower() for value in ctx.mail.headers.get("x-failed-recipients", ())
             for value in value.split(",") if "@" in value]
    for report in reports:
        if _ACTION_FAILED.search(report):
            found += [address.lower() for address in _FINAL_RECIPIENT.findall(report)]
    own = set(ctx.config.mail.addresses)
    return [address for address in dict.fromkeys(found) if address not in own]


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]
