"""Find the ticket a mail refers to: reply token, subject tag, then In-Reply-To / References (DESIGN §3)."""

from __future__ import annotations

from mailticketd.mail.authresults import verdict
from mailticketd.pipeline.context import VIA_REFERENCES, VIA_TAG, VIA_TOKEN, VIA_WEB, Candidate, Context
from mailticketd.tickets.tags import find_tag_numbers
from mailticketd.tickets.tokens import tokens_in


class ResolveTicket:
    """Name the referenced ticket, most trusted reference first; never match by subject text."""

    name = "resolve-ticket"

    async def run(self, ctx: Context) -> None:
        if ctx.ticket is not None:  # a bounce already matched to the mail it reports on
            return
        if ctx.envelope.web is not None:  # the web names its ticket itself; nothing in the text counts
            number = ctx.envelope.web.ticket_number
            ticket = await ctx.store.tickets.by_number(number) if number is not None else None
            if ticket is not None:
                ctx.candidate = Candidate(ticket, VIA_WEB)
            return
        if await self._by_token(ctx):
            return
        if ctx.is_operator_address and _authenticated_operator(ctx):
            ctx.operator = True
        for number in find_tag_numbers(ctx.config.mail.tag_prefix, ctx.mail.subject):
            ticket = await ctx.store.tickets.by_number(number)
            if ticket is not None:
                ctx.candidate = Candidate(ticket, VIA_TAG)
                return
        # In-Reply-To names the mail answered; References run oldest to newest.
        message_ids = list(dict.fromkeys([*ctx.mail.in_reply_to, *reversed(ctx.mail.references)]))
        found = await ctx.store.tickets.by_message_ids(message_ids)
        for message_id in message_ids:
            if message_id in found:
                ticket = await ctx.store.tickets.by_id(found[message_id])
                if ticket is not None:
                    ctx.candidate = Candidate(ticket, VIA_REFERENCES)
                    return

    async def _by_token(self, ctx: Context) -> bool:
        """A token made for the author proves they received mail about that ticket."""
        author = ctx.author_address
        addresses = [*ctx.envelope.rcpt_tos, *(a.address for a in (*ctx.mail.to, *ctx.mail.cc))]
        for token in tokens_in(addresses, ctx.config.mail.addresses):
            number = ctx.services.signer.verify(token, author) if author else None
            ticket = await ctx.store.tickets.by_number(number) if number is not None else None
            if ticket is None:
                ctx.flags.append("reply-token-not-valid-for-sender")
                continue
            ctx.candidate = Candidate(ticket, VIA_TOKEN)
            # A customer's token outweighs a DMARC failure (forwarders break DMARC); an operator's
            # mail that our own MTA found forged gets no operator's powers, whatever token it carries.
            ctx.operator = ctx.is_operator_address and not ctx.forged
            return True
        return False


def _authenticated_operator(ctx: Context) -> bool:
    """An operator's mail that our own MTA found DMARC-aligned, when the config trusts that."""
    operators = ctx.config.operators
    if not operators.trust_authentication_results or not ctx.author_address:
        return False
    found = verdict(ctx.mail, operators.authserv_id)
    return found is not None and found.dmarc_passed_for(ctx.author_address)
