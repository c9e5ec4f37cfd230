"""Drop a mail that is already stored: same Message-ID from the same author."""

from __future__ import annotations

from mailticketd.pipeline.context import Context
from mailticketd.pipeline.outcomes import Discard


class DropDuplicate:
    """Keep one article when the same mail arrives twice (two support addresses, an MTA resend)."""

    name = "drop-duplicate"

    async def run(self, ctx: Context) -> None:
        author = ctx.author_address
        if not ctx.mail.message_id or not author:
            return
        ticket_id = await ctx.store.articles.find_duplicate(ctx.mail.message_id, author)
        if ticket_id is not None:
            raise Discard("duplicate", ticket_id=ticket_id)
