"""The order of the pipeline steps, in one place, checked at start-up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from mailticketd.pipeline.context import Context
from mailticketd.pipeline.steps.apply_commands import ApplyCommands
from mailticketd.pipeline.steps.authorise import Authorise
from mailticketd.pipeline.steps.check_request import CheckRequest
from mailticketd.pipeline.steps.drop_duplicate import DropDuplicate
from mailticketd.pipeline.steps.guard_loop import GuardLoop
from mailticketd.pipeline.steps.identify_people import IdentifyPeople
from mailticketd.pipeline.steps.link_vms import LinkVms
from mailticketd.pipeline.steps.match_bounce import MatchBounce
from mailticketd.pipeline.steps.plan_notifications import PlanNotifications
from mailticketd.pipeline.steps.resolve_ticket import ResolveTicket
from mailticketd.pipeline.steps.store_article import StoreArticle


class Step(Protocol):
    name: str

    async def run(self, ctx: Context) -> None: ...


DEFAULT_ORDER: tuple[str, ...] = (
    "drop-duplicate",
    "guard-loop",
    "match-bounce",
    "identify-people",
    "resolve-ticket",
    "authorise",
    "apply-commands",
    "store-article",
    "link-vms",
    "check-request",
    "plan-notifications",
)

AVAILABLE_STEPS: tuple[Step, ...] = (
    DropDuplicate(), GuardLoop(), MatchBounce(), IdentifyPeople(), ResolveTicket(), Authorise(), ApplyCommands(),
    StoreArticle(), LinkVms(), CheckRequest(), PlanNotifications(),
)


# How long the steps of a mail run before they let the event loop serve the SMTP sessions.
YIELD_AFTER = 0.001


class PipelineError(Exception):
    """The step list is wrong: an unknown or repeated name, or a registered step twice."""


class Pipeline:
    """The steps in their order; ``run`` passes one context through all of them."""

    def __init__(self, order: Sequence[str] = DEFAULT_ORDER, steps: Iterable[Step] = AVAILABLE_STEPS) -> None:
        registry: dict[str, Step] = {}
        for step in steps:
            if step.name in registry:
                raise PipelineError(f"step {step.name!r} is registered twice")
            registry[step.name] = step
        seen: set[str] = set()
        for name in order:
            if name not in registry:
                raise PipelineError(f"unknown pipeline step {name!r}")
            if name in seen:
                raise PipelineError(f"pipeline step {name!r} is listed twice")
            seen.add(name)
        self.steps: tuple[Step, ...] = tuple(registry[name] for name in order)

    async def run(self, ctx: Context) -> None:
        since = time.perf_counter()
        for step in self.steps:
            await step.run(ctx)
            # A transaction's statements run at once in the event loop's thread (storage.connection), so the steps
            # hardly give the loop back by themselves: every YIELD_AFTER seconds, between two steps, the SMTP
            # sessions go on, so a sender waits about that long, not for a whole mail.
            if (now := time.perf_counter()) - since >= YIELD_AFTER:
                await asyncio.sleep(0)
                since = time.perf_counter()
                ctx.given_away += since - now
