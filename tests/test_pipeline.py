"""The pipeline: its order is checked at start-up, and each step decides on an inline mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.mail.parse import parse_mail
from mailticketd.pipeline.context import Context, Envelope
from mailticketd.pipeline.order import DEFAULT_ORDER, Pipeline, PipelineError
from mailticketd.pipeline.steps.guard_loop import GuardLoop
from mailticketd.storage import database_for
from tests.helpers import make_config, make_mail


def test_unknown_step_name_stops_start_up() -> None:
    """A step name nobody registered is refused when the pipeline is built."""
    with pytest.raises(PipelineError, match="unknown pipeline step 'notify-everyone'"):
        Pipeline((*DEFAULT_ORDER, "notify-everyone"))


def test_repeated_step_name_stops_start_up() -> None:
    """Listing a step twice is refused when the pipeline is built."""
    with pytest.raises(PipelineError, match="listed twice"):
        Pipeline((*DEFAULT_ORDER, "authorise"))


def test_default_order_follows_the_design() -> None:
    """Loop guard before identification, resolving before authorising, storing before linking VMs."""
    names = [step.name for step in Pipeline().steps]
    assert names.index("guard-loop") < names.index("identify-people") < names.index("resolve-ticket")
    assert names.index("resolve-ticket") < names.index("authorise") < names.index("store-article")
    assert names.index("store-article") < names.index("link-vms")


async def guard(tmp_path: Path, raw: bytes, mail_from: str = "kunde@customer.example", **config_sections: dict) -> Context:
    config = make_config(tmp_path, **config_sections)
    daemon = Daemon(config)
    async with database_for(config.storage) as db, db.read() as store:
        ctx = Context(inbox_id=1, envelope=Envelope("127.0.0.1:1", mail_from, ("support@example.net",)),
                      mail=parse_mail(raw), visible_text="", store=store, config=config,
                      services=daemon.services, now=utc_now())
        await GuardLoop().run(ctx)
        return ctx


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Auto-Submitted": "auto-replied"}, "auto-submitted"),
    ({"Precedence": "bulk"}, "precedence-bulk"),
    ({"Precedence": "list"}, "precedence-list"),
    ({"X-Autoreply": "yes"}, "x-autoreply"),
])
async def test_automatic_mail_is_never_answered(tmp_path: Path, headers: dict[str, str], reason: str) -> None:
    """Each auto-reply marker makes the mail an auto-reply that gets no automatic answer."""
    ctx = await guard(tmp_path, make_mail(headers=headers))
    assert (ctx.kind, ctx.no_auto_reply) == ("auto-reply", reason)


@pytest.mark.parametrize(("sender", "headers", "reason"), [
    ("kunde@customer.example", {"X-Loop": "support@example.net"}, "own-x-loop"),
    ("support@example.net", {}, "own-address"),
    ("kunde@customer.example", {"X-Spam-Flag": "YES"}, "spam"),
    ("kunde@customer.example", {"X-Auto-Response-Suppress": "All"}, "x-auto-response-suppress"),
])
async def test_loops_and_spam_are_never_answered(tmp_path: Path, sender: str, headers: dict[str, str],
                                                 reason: str) -> None:
    """Our own X-Loop, our own address as sender and spam-flagged mail get no automatic answer."""
    ctx = await guard(tmp_path, make_mail(sender, headers=headers))
    assert ctx.no_auto_reply == reason


async def test_plain_customer_mail_may_be_answered(tmp_path: Path) -> None:
    """``Auto-Submitted: no`` and an ordinary sender leave the mail answerable."""
    ctx = await guard(tmp_path, make_mail(headers={"Auto-Submitted": "no"}))
    assert (ctx.kind, ctx.no_auto_reply) == ("mail", None)


async def test_empty_return_path_and_mailer_daemon_are_bounces(tmp_path: Path) -> None:
    """A MAILER-DAEMON sender is a bounce; an empty return path with a person's From is an auto-reply."""
    assert (await guard(tmp_path, make_mail("MAILER-DAEMON@mx.example"), mail_from="<>")).kind == "bounce"
    ctx = await guard(tmp_path, make_mail("kunde@customer.example"), mail_from="<>")
    assert (ctx.kind, ctx.no_auto_reply) == ("auto-reply", "empty-return-path")
