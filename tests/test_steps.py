"""Each pipeline step as a unit: a context built from an inline mail on a real SQLite file, one step run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.mail.parse import parse_mail
from mailticketd.mail.reply import new_text, visible_text
from mailticketd.pipeline.context import Candidate, Context, Envelope
from mailticketd.pipeline.commands import split_commands
from mailticketd.pipeline.steps.authorise import Authorise
from mailticketd.pipeline.steps.link_vms import LinkVms
from mailticketd.pipeline.steps.resolve_ticket import ResolveTicket
from mailticketd.storage import Store
from tests.helpers import make_config, make_mail

OPERATOR = "op@provider.example"


@asynccontextmanager
async def context(tmp_path: Path, raw: bytes, *, rcpt: str = "support@example.net",
                  setup: Callable[[Store], Any] | None = None) -> AsyncIterator[Context]:
    """A context for ``raw`` inside a write transaction, after ``setup`` filled the store."""
    config = make_config(tmp_path)
    daemon = Daemon(config)
    await daemon.db.open()
    try:
        async with daemon.db.transaction() as store:
            if setup is not None:
                await setup(store)
            mail = parse_mail(raw)
            yield Context(inbox_id=1, envelope=Envelope("127.0.0.1:1", "x@y", (rcpt,)), mail=mail,
                          visible_text=visible_text(mail.text), new_text=new_text(mail.text), store=store,
                          config=config, services=daemon.services, now=utc_now())
    finally:
        await daemon.db.close()


async def ticket_for(store: Store, requester: str) -> int:
    user = await store.users.create(requester)
    ticket = await store.tickets.create(first_number=10000, subject="s", organisation_id=None, requester_id=user.id)
    await store.tickets.add_participants(ticket.id, [(user.id, "requester")])
    return ticket.number


async def test_resolve_prefers_a_valid_token_over_the_tag(tmp_path: Path) -> None:
    """A token made for the author names its ticket, even when the subject's tag names another one."""
    async def setup(store: Store) -> None:
        await ticket_for(store, "anna@customer.example")
        await ticket_for(store, "bob@customer.example")
    signer_config = make_config(tmp_path)
    token = Daemon(signer_config).services.signer.address("support@example.net", 10000, OPERATOR)
    raw = make_mail(OPERATOR, to=token, subject="Re: [MH#10001] x")
    async with context(tmp_path, raw, rcpt=token, setup=setup) as ctx:
        await ResolveTicket().run(ctx)
        assert ctx.candidate is not None
        assert (ctx.candidate.ticket.number, ctx.candidate.via, ctx.operator) == (10000, "token", True)


async def test_resolve_by_references_when_there_is_no_tag(tmp_path: Path) -> None:
    """With no token and no tag, the newest known Message-ID in References names the ticket."""
    async def setup(store: Store) -> None:
        number = await ticket_for(store, "anna@customer.example")
        ticket = await store.tickets.by_number(number)
        assert ticket is not None
        await store.articles.remember_message_id("old@x", ticket_id=ticket.id, article_id=None, direction="out")
    raw = make_mail("anna@customer.example", subject="Re: something", references="<unknown@z> <old@x>")
    async with context(tmp_path, raw, setup=setup) as ctx:
        await ResolveTicket().run(ctx)
        assert ctx.candidate is not None and (ctx.candidate.ticket.number, ctx.candidate.via) == (10000, "references")


async def test_authorise_turns_a_stranger_away_with_a_flag(tmp_path: Path) -> None:
    """A stranger naming a ticket gets the decision "new" and operators get the refused reference."""
    async def setup(store: Store) -> None:
        await ticket_for(store, "anna@customer.example")
    async with context(tmp_path, make_mail("mallory@evil.example", subject="[MH#10000]"), setup=setup) as ctx:
        ticket = await ctx.store.tickets.by_number(10000)
        assert ticket is not None
        ctx.candidate = Candidate(ticket, "tag")
        ctx.sender = await ctx.store.users.create("mallory@evil.example")
        await Authorise().run(ctx)
        assert (ctx.decision, ctx.ticket) == ("new", None)
        assert ctx.flags == ["refused-reference:10000:tag"]


async def test_link_vms_reads_only_new_text_and_flags_unknown_ones(tmp_path: Path) -> None:
    """VM names come from the subject and the unquoted text; one not in the inventory is flagged unknown."""
    raw = make_mail("anna@customer.example", subject="de-ab-srv-0001 slow",
                    body="Also de-ab-srv-0002.\n\nOn Mon, 2 Feb 2026, X wrote:\n> de-ab-srv-0003\n")
    async with context(tmp_path, raw) as ctx:
        number = await ticket_for(ctx.store, "anna@customer.example")
        ctx.ticket = await ctx.store.tickets.by_number(number)
        await LinkVms().run(ctx)
        assert ctx.vm_names == ["de-ab-srv-0001", "de-ab-srv-0002"]
        assert [(vm.name, vm.flags) for vm in await ctx.store.tickets.vms(ctx.ticket.id)] == [
            ("de-ab-srv-0001", ("unknown",)), ("de-ab-srv-0002", ("unknown",))]


def test_commands_are_lines_of_their_own_at_the_top_or_the_bottom() -> None:
    """Commands are read from the top and from the bottom; a hashtag inside the text is text."""
    commands, rest = split_commands("\n#close\n#assign olaf@provider.example\nDone, see #42.\nThanks\n#note\n\n")
    assert commands == [("#close", ""), ("#assign", "olaf@provider.example"), ("#note", "")]
    assert rest == "Done, see #42.\nThanks"


def test_a_command_under_the_answer_is_not_text() -> None:
    """'#close' as the last line of an answer closes; the answer goes on without it."""
    commands, rest = split_commands("Das Backup läuft wieder.\n\nViele Grüße\n#close")
    assert commands == [("#close", "")] and rest == "Das Backup läuft wieder.\n\nViele Grüße"
    assert split_commands("#1 Problem gelöst") == ([], "#1 Problem gelöst")
