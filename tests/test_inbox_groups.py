"""Mails processed several in one transaction during a storm: each gets exactly what it would get alone, and a mail
that fails makes only itself fail."""

from __future__ import annotations

import asyncio
import email
import email.policy
import math
from pathlib import Path

import pytest
import structlog.testing

from mailticketd.app import Daemon
from mailticketd.config import Config
from mailticketd.storage import Store
from mailticketd.storage.intake import Arrival
from tests import helpers
from tests.helpers import SUPPORT, make_config, make_mail

CUSTOMERS = [f"kunde{number}@customer{number}.example" for number in range(10)]


async def queued(daemon: Daemon, mails: list[tuple[str, bytes]]) -> None:
    """Put ``mails`` (sender, raw) into the inbox of a daemon that is not started, as the SMTP side would."""
    async with daemon.db.transaction() as store:
        for sender, raw in mails:
            await store.inbox.add(peer="127.0.0.1", mail_from=sender, rcpt_tos=[SUPPORT], message_id=None, raw=raw)


async def drained(config: Config, mails: list[tuple[str, bytes]], poison: str | None = None,
                  together: bool = True, smtp_busy: bool = False) -> Daemon:
    """A daemon (not listening) that processed ``mails``: after the first, in groups as big as it may make them
    (``together``) or one by one; ``smtp_busy``: as while the SMTP side stores mail all the time, else as after a
    storm.  With ``poison``, storing an article whose subject holds that word fails."""
    daemon = Daemon(config)
    await daemon.db.open()
    if poison is not None:
        async with daemon.db.transaction() as store:
            if daemon.db.dialect.name == "sqlite":
                await store.conn.execute(
                    "CREATE TRIGGER poison BEFORE INSERT ON articles WHEN NEW.subject LIKE '%" + poison + "%'"
                    " BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
            else:
                await store.conn.execute(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.subject LIKE '%" + poison + "%'"
                    " THEN RAISE EXCEPTION 'disk quota exceeded'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
                await store.conn.execute(
                    "CREATE TRIGGER poison BEFORE INSERT ON articles FOR EACH ROW EXECUTE FUNCTION poison()")
    await queued(daemon, mails)
    # As in a storm on a fast machine, the biggest groups; or none at all.
    daemon.worker.group_window = daemon.worker.quiet_window = 60.0 if together else 0.0
    if smtp_busy:
        daemon.db.intake.last_commit = math.inf  # the SMTP side's last commit is never long ago
    assert await daemon.worker.process_next()  # the first mail (alone: nothing is parsed yet), the others read
    await daemon.worker.parsed()
    assert await daemon.worker.drain() == len(mails) - 1
    return daemon


@pytest.mark.parametrize("session_waits", [True, False], ids=["a-session-waits", "nobody-waits"])
async def test_a_sender_waits_for_one_mail_of_a_group_not_the_whole_group(tmp_path: Path, session_waits: bool) -> None:
    """A session hands its mail over while the pipeline works through a group in one transaction, which holds the
    write lock the session's commit needs: the transaction ends after the mail in progress, the session's mail is
    stored, and the rest of the group comes next, in order, each mail with its own ticket.  With no session waiting,
    the group is processed whole."""
    daemon = Daemon(make_config(tmp_path))
    await daemon.db.open()
    if not daemon.db.intake.waits_for_pipeline:
        await daemon.db.close()
        pytest.skip("on PostgreSQL the SMTP side's commits never wait for the pipeline's transactions")
    try:
        mails = [(sender, make_mail(sender, subject=f"Ausfall {number}"))
                 for number, sender in enumerate(CUSTOMERS[:6])]
        await queued(daemon, mails)
        daemon.worker.group_window = 60.0  # as big a group as a storm allows
        daemon.db.intake.last_commit = math.inf  # mail streams in all the time
        daemon.worker.hold_up = 0.0  # the session has waited long enough as soon as it waits
        assert await daemon.worker.process_next()  # the first mail alone, the next five read ahead
        await daemon.worker.parsed()
        late = CUSTOMERS[7]
        senders = CUSTOMERS[:6]
        if session_waits:
            raw = make_mail(late, subject="Noch ein Ausfall")
            arriving = asyncio.create_task(daemon.db.intake.store(Arrival(
                peer="127.0.0.1", mail_from=late, rcpt_tos=(SUPPORT,), message_id=None, size=len(raw),
                chunks=lambda: [raw], max_backlog=1000)))
            senders = senders + [late]
        assert await daemon.worker.process_next()  # the five as one group, until a session waits
        async with daemon.db.read() as store:
            done = [row.mail_from for row in await store.inbox.list(("done",))]
        assert done == (CUSTOMERS[:2] if session_waits else CUSTOMERS[:6])
        if session_waits:
            await asyncio.wait_for(arriving, 10)  # its turn came first
        await daemon.worker.drain()
        inbox, tickets, _ = await outcome(daemon)
        assert [(sender, status) for sender, status, *_ in inbox] == [(sender, "done") for sender in senders]
        # Each its own ticket, numbered in the order the mails came.
        assert [(subject, requester) for _, subject, requester, *_ in tickets] == [
            (f"Ausfall {number}", sender) for number, sender in enumerate(CUSTOMERS[:6])
        ] + ([("Noch ein Ausfall", late)] if session_waits else [])
    finally:
        await closed(daemon)


async def closed(daemon: Daemon) -> None:
    await daemon.worker.close()
    await daemon.db.close()


async def answered(store: Store, address: str) -> list[str]:
    """The subjects of the acknowledgements queued for ``address``."""
    return [str(email.message_from_bytes(await store.outbox.raw(row.id) or b"", policy=email.policy.default)["Subject"])
            for row in await store.outbox.list(("queued",)) if row.rcpt_to == address and row.kind == "ack"]


@pytest.mark.parametrize("smtp_busy", [True, False], ids=["while-mail-streams-in", "after-the-storm"])
async def test_mails_processed_together_each_get_their_own_ticket_and_answer(tmp_path: Path, smtp_busy: bool) -> None:
    """Ten new customers writing at once: their mails are processed in groups (while mail still streams in, at most
    eight a transaction, so the SMTP side's commits never wait long; after the storm, bigger ones), and each still
    gets a ticket of its own, its VM linked, and one acknowledgement naming its ticket, exactly as when processed
    alone."""
    mails = [(sender, make_mail(sender, subject=f"Ausfall {number}",
                                body=f"Hallo, de-fr-srv-08{number:02d} antwortet nicht."))
             for number, sender in enumerate(CUSTOMERS)]
    daemon = await drained(make_config(tmp_path), mails, smtp_busy=smtp_busy)
    try:
        # Really processed together, not one by one: after the first (alone), 8 and 1 left alone, or all 9 at once.
        assert daemon.worker.grouped_mails == (8 if smtp_busy else 9)
        async with daemon.db.read() as store:
            tickets = {ticket.subject: ticket for ticket in await store.tickets.list()}
            assert await store.inbox.list(("pending", "failed")) == []
            for number, sender in enumerate(CUSTOMERS):
                assert tickets[f"Ausfall {number}"].requester == sender
                ticket = await store.tickets.by_number(tickets[f"Ausfall {number}"].number)
                assert ticket is not None
                assert [vm.name for vm in await store.tickets.vms(ticket.id)] == [f"de-fr-srv-08{number:02d}"]
                [subject] = await answered(store, sender)
                assert f"Ausfall {number}" in subject and str(ticket.number) in subject
        assert len(tickets) == len(CUSTOMERS)
    finally:
        await closed(daemon)


async def test_a_mail_that_fails_in_a_group_fails_alone(tmp_path: Path) -> None:
    """One mail of a group cannot be stored: the group's transaction is undone and each mail is processed again on
    its own, so the others get their ticket and exactly one acknowledgement, and only that mail waits for a retry."""
    mails = [(sender, make_mail(sender, subject="Gift im Postfach" if number == 2 else f"Ausfall {number}"))
             for number, sender in enumerate(CUSTOMERS[:5])]
    with structlog.testing.capture_logs() as logs:
        daemon = await drained(make_config(tmp_path), mails, poison="Gift")
    try:
        assert [entry["mails"] for entry in logs if entry["event"] == "inbox.group_failed"]
        async with daemon.db.read() as store:
            assert sorted(ticket.subject for ticket in await store.tickets.list()) == [
                "Ausfall 0", "Ausfall 1", "Ausfall 3", "Ausfall 4"]
            [waiting] = await store.inbox.list(("pending", "failed"))
            for number, sender in enumerate(CUSTOMERS[:5]):
                assert len(await answered(store, sender)) == (0 if number == 2 else 1)
        assert waiting.mail_from == CUSTOMERS[2] and waiting.attempts == 1
        assert "disk quota exceeded" in (waiting.reason or "")
    finally:
        await closed(daemon)


async def outcome(daemon: Daemon) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """What people would see: each inbox row's decision and ticket, each ticket with its requester and articles,
    each outgoing mail's kind, recipient and ticket, in order."""
    async with daemon.db.read() as store:
        inbox = [(row.mail_from, row.status, row.decision, row.ticket_number)
                 for row in await store.inbox.list(("pending", "done", "failed"))]
        tickets = []
        for summary in sorted(await store.tickets.list(), key=lambda ticket: ticket.number):
            ticket = await store.tickets.by_number(summary.number)
            assert ticket is not None
            articles = [(article.author, article.kind, article.flags)
                        for article in await store.articles.for_ticket(ticket.id)]
            tickets.append((summary.number, summary.subject, summary.requester, summary.status, articles))
        outbox = [(row.kind, row.rcpt_to, row.ticket_id) for row in await store.outbox.list(("queued",))]
    return inbox, tickets, outbox


async def test_a_group_decides_exactly_what_one_mail_after_the_other_decides(tmp_path: Path,
                                                                            request: pytest.FixtureRequest) -> None:
    """Mails that depend on each other in one group: a reply to the ticket the mail before it opened, the same mail
    again through a second support address, a CC'd colleague writing too, and more mails than one sender may be
    answered in an hour.  Processed together they give the same tickets, articles, decisions and outgoing mail
    as processed one by one."""
    anna, bob = CUSTOMERS[0], CUSTOMERS[1]
    first = make_mail(anna, subject="Ausfall de-fr-srv-0815", message_id="first@customer0.example",
                      cc=bob)
    mails = [
        (anna, make_mail(anna, subject="Vorab", message_id="before@customer0.example")),
        (anna, first),
        (anna, make_mail(anna, subject="AW: Ausfall de-fr-srv-0815", message_id="reply@customer0.example",
                         in_reply_to="first@customer0.example", references="first@customer0.example",
                         body="Er antwortet immer noch nicht.")),
        (anna, first),  # the same mail again (it went to two support addresses)
        (bob, make_mail(bob, subject="Re: Ausfall de-fr-srv-0815", in_reply_to="first@customer0.example",
                        references="first@customer0.example", body="Bei mir auch.")),
        (anna, make_mail(anna, subject="Noch eine Frage")),
        (anna, make_mail(anna, subject="Und noch eine")),
    ]
    seen = []
    for together in (True, False):
        folder = tmp_path / ("together" if together else "alone")
        folder.mkdir()
        storage = {}
        if helpers.DATABASE_URL is not None and not together:  # on PostgreSQL: a second, empty database
            storage = {"database": request.getfixturevalue("postgres_cluster").database()}
        daemon = await drained(make_config(folder, notify={"max_auto_replies_per_hour": 2}, storage=storage),
                               mails, together=together)
        try:
            assert daemon.worker.grouped_mails == (len(mails) - 1 if together else 0)
            seen.append(await outcome(daemon))
        finally:
            await closed(daemon)
    together, alone = seen
    for part, name in enumerate(("inbox", "tickets", "outbox")):
        assert together[part] == alone[part], name
    inbox, tickets, outbox = together
    assert [decision for _, _, decision, _ in inbox].count("duplicate") == 1
    assert any(len(articles) == 3 for *_, articles in tickets)  # the reply and Bob's answer joined the ticket
