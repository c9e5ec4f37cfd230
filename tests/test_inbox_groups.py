"""Mails processed several in one transaction during a storm: each gets exactly what it would get alone, and a mail
that fails makes only itself fail."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import structlog.testing

from mailticketd.app import Daemon
from mailticketd.config import Config
from mailticketd.storage import Store
from tests.helpers import SUPPORT, make_config, make_mail

CUSTOMERS = [f"kunde{number}@customer{number}.example" for number in range(10)]


async def queued(daemon: Daemon, mails: list[tuple[str, bytes]]) -> None:
    """Put ``mails`` (sender, raw) into the inbox of a daemon that is not started, as the SMTP side would."""
    async with daemon.db.transaction() as store:
        for sender, raw in mails:
            await store.inbox.add(peer="127.0.0.1", mail_from=sender, rcpt_tos=[SUPPORT], message_id=None, raw=raw)


async def drained(config: Config, mails: list[tuple[str, bytes]], poison: str | None = None) -> Daemon:
    """A daemon (not listening) that processed ``mails`` in groups as big as it may make them; with ``poison``,
    storing an article whose subject holds that word fails."""
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
    daemon.worker.group_window = 60.0  # as in a storm on a fast machine: the biggest groups
    assert await daemon.worker.drain() == len(mails)
    return daemon


async def closed(daemon: Daemon) -> None:
    await daemon.worker.close()
    await daemon.db.close()


async def answered(store: Store, address: str) -> list[str]:
    """The subjects of the acknowledgements queued for ``address``."""
    return [str(email.message_from_bytes(await store.outbox.raw(row.id) or b"", policy=email.policy.default)["Subject"])
            for row in await store.outbox.list(("queued",)) if row.rcpt_to == address and row.kind == "ack"]


async def test_mails_processed_together_each_get_their_own_ticket_and_answer(tmp_path: Path) -> None:
    """Ten new customers writing at once: their mails are processed in groups, and each still gets a ticket of
    its own, its VM linked, and one acknowledgement naming its ticket, exactly as when processed alone."""
    mails = [(sender, make_mail(sender, subject=f"Ausfall {number}",
                                body=f"Hallo, de-fr-srv-08{number:02d} antwortet nicht."))
             for number, sender in enumerate(CUSTOMERS)]
    daemon = await drained(make_config(tmp_path), mails)
    try:
        assert daemon.worker.grouped_mails >= 8  # really processed together, not one by one
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
