"""The client side of bench/load.py: one process of several SMTP connections sending support mails.

Each process builds its mails before the start signal (so building them costs
nothing during the run), then sends them over ``connections`` concurrent
sessions, reusing each session for up to 100 mails or opening one per mail.
About 30 % are replies to a mail the same process sent earlier in the run;
when the daemon has already made a ticket of that mail (looked up read-only in
its database by Message-ID) the reply carries the ticket's tag, otherwise only
In-Reply-To.  With an ``interval``, the process starts its mails that many
seconds apart, counted from its own start (a steady stream instead of as fast
as the sessions go; the processes start together, so their mails come in
step, one from each at a time).  The
process reports, per mail, the transaction's latency and the moment of its
``250``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import aiosmtplib

from support_mail import SUPPORT, MailMaker, Sent, tag

REPLY_SHARE = 0.3
MAILS_PER_CONNECTION = 100
_MARK = b"XTAGX"


@dataclass
class Plan:
    """The mails of one process in sending order: raw bytes, or a reply to an earlier item."""

    raws: list[bytes] = field(default_factory=list)
    reply_to: list[Sent | None] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)


def build_plan(count: int, organisations: int, seed: int) -> Plan:
    maker = MailMaker(organisations, seed)
    pick = random.Random(seed + 1)
    plan, sent = Plan(), list[Sent]()
    for index in range(count):
        if index >= 5 and pick.random() < REPLY_SHARE:
            original = pick.choice(sent)
            raw = maker.reply(original, None).replace(b"Subject: AW: ", b"Subject: AW: XTAGX ", 1)
            if _MARK not in raw:  # the subject was encoded (umlauts): mark it inside the encoded word
                raw = raw.replace(b"?AW:_", b"?AW:_XTAGX_", 1)
            plan.raws.append(raw)
            plan.reply_to.append(original)
            plan.senders.append(f"person{original.person}@kunde{original.organisation:05d}.example")
        else:
            raw, item = maker.new()
            sent.append(item)
            plan.raws.append(raw)
            plan.reply_to.append(None)
            plan.senders.append(f"person{item.person}@kunde{item.organisation:05d}.example")
    return plan


class Tags:
    """Ticket numbers of earlier mails, read from the daemon's database without writing to it."""

    def __init__(self, database: Path | None) -> None:
        self.conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True) if database else None
        self.tagged = 0

    def apply(self, raw: bytes, original: Sent | None) -> bytes:
        if original is None:
            return raw
        number = None
        if self.conn is not None:
            row = self.conn.execute("SELECT t.number FROM message_ids m JOIN tickets t ON t.id = m.ticket_id"
                                    " WHERE m.message_id = ?", (original.message_id,)).fetchone()
            number = row[0] if row else None
        if number is None:
            return raw.replace(b"XTAGX ", b"", 1).replace(b"XTAGX_", b"", 1)
        self.tagged += 1
        return raw.replace(_MARK, tag(number).encode(), 1)


async def _send_all(port: int, plan: Plan, connections: int, reuse: bool, tags: Tags,
                    deadline: float, interval: float) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(plan.raws)):
        queue.put_nowait(index)
    latencies: list[float] = []
    done_at: list[float] = []
    errors: dict[str, int] = {}

    def failed(error: BaseException) -> None:
        name = type(error).__name__
        errors[name] = errors.get(name, 0) + 1

    first = time.monotonic()

    async def session() -> None:
        client: aiosmtplib.SMTP | None = None
        used = 0
        while not queue.empty() and time.monotonic() < deadline:
            index = queue.get_nowait()
            if interval:
                await asyncio.sleep(first + index * interval - time.monotonic())
            raw = tags.apply(plan.raws[index], plan.reply_to[index])
            started = time.monotonic()
            try:
                if client is None:
                    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
                    await client.connect()
                    used = 0
                errors_by_rcpt, _ = await client.sendmail(plan.senders[index], [SUPPORT], raw)
                finished = time.monotonic()
                if errors_by_rcpt:
                    failed(RuntimeError("recipient refused"))
                else:
                    latencies.append(finished - started)
                    done_at.append(finished)
                used += 1
                if not reuse or used >= MAILS_PER_CONNECTION:
                    await client.quit()
                    client = None
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as error:
                failed(error)
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            await client.quit()

    await asyncio.gather(*(session() for _ in range(connections)))
    return {"latencies": latencies, "done_at": done_at, "errors": errors, "tagged": tags.tagged,
            "replies": sum(1 for item in plan.reply_to if item is not None)}


def client_process(port: int, count: int, connections: int, reuse: bool, organisations: int, seed: int,
                   database: str | None, ready: Queue[str], go: Event, results: Queue[dict[str, Any]],
                   timeout: float, interval: float = 0.0) -> None:
    """Build the mails, say ready, wait for the start, send (a mail every ``interval`` seconds, or as fast as the
    sessions go), and put the figures on ``results``."""
    plan = build_plan(count, organisations, seed)
    tags = Tags(Path(database) if database else None)
    ready.put("ready")
    go.wait(timeout)
    figures = asyncio.run(_send_all(port, plan, connections, reuse, tags, time.monotonic() + timeout, interval))
    results.put(figures)
