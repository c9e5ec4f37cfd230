"""Operators work by mail: commands at the top of a reply, internal notes, status mails to customers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailticketd.app import Daemon
from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.sink import Sink
from tests.test_threading import ticket

CUSTOMER = "anna@customer.example"


async def operator_token(daemon: Daemon, sink: Sink) -> str:
    """Open a ticket from the customer; return the operator's reply address from the notice."""
    await deliver(daemon, make_mail(CUSTOMER, subject="Backup fehlt"))
    [notice] = await mails_to(sink, 1, where=to(OPERATOR))
    return str(parsed(notice)["Reply-To"])


async def operator_says(daemon: Daemon, address: str, body: str) -> None:
    await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: [MH#10000] Backup fehlt", body=body),
                  mail_from=OPERATOR, rcpt=[address])
    await quiet(daemon)


def customer_mails(sink: Sink) -> list[str]:
    return [body_of(parsed(item)) for item in sink.received if CUSTOMER in item.rcpt_tos]


async def test_note_is_internal_and_never_reaches_the_customer(tmp_path: Path) -> None:
    """``#note`` stores the text as an internal note; the customer receives nothing."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#note\nKunde hat kein Backup gebucht.")
        assert len(customer_mails(sink)) == 1  # the acknowledgement only
        article = (await ticket(daemon, 10000))["articles"][-1]
        assert (article["kind"], article["visible_text"]) == ("note", "Kunde hat kein Backup gebucht.")


async def test_close_sends_the_reply_and_a_status_mail(tmp_path: Path) -> None:
    """``#close`` with text sends the text, closes the ticket and tells the customer it is closed."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#close\nDas Backup ist wieder da.")
        mails = await mails_to(sink, 3, where=to(CUSTOMER))
        bodies = [body_of(parsed(item)) for item in mails]
        assert "Das Backup ist wieder da." in bodies[1] and "#close" not in bodies[1]
        assert "wir haben Ihr Ticket [MH#10000] „Backup fehlt“ geschlossen." in bodies[2]
        assert (await ticket(daemon, 10000))["status"] == "closed"


async def test_pending_open_and_assign(tmp_path: Path) -> None:
    """``#pending`` tells the customer the desk waits for them; ``#open`` and ``#assign`` change the ticket only."""
    async with desk(tmp_path, operators={"addresses": [OPERATOR, "olaf@provider.example"]}) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#pending\nWelche VM ist betroffen?")
        assert (await ticket(daemon, 10000))["status"] == "pending"
        assert "brauchen wir eine Rückmeldung" in customer_mails(sink)[-1]
        await operator_says(daemon, address, "#open\n#assign olaf@provider.example")
        detail = await ticket(daemon, 10000)
        assert detail["status"] == "open" and detail["assignee"] == "olaf@provider.example"
        assert "assigned:olaf@provider.example" in detail["articles"][-1]["flags"]
        assert len(customer_mails(sink)) == 3  # ack, the question, the pending notice; #open alone sends nothing


async def test_unknown_command_is_answered_to_the_operator_and_changes_nothing(tmp_path: Path) -> None:
    """``#clsoe`` gets the operator a list of valid commands; the ticket and the customer are untouched."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#clsoe\nErledigt.")
        answers = await mails_to(sink, 2, where=to(OPERATOR))
        text = body_of(parsed(answers[-1]))
        assert "#clsoe" in text and "#close" in text and "#assign <operator>" in text
        detail = await ticket(daemon, 10000)
        assert detail["status"] == "new"
        assert detail["articles"][-1]["kind"] == "note"
        assert len(customer_mails(sink)) == 1


async def test_customer_reply_reopens_a_recently_closed_ticket(tmp_path: Path) -> None:
    """A reply to a ticket closed within the window reopens it and operators are told."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#close")
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Backup fehlt", body="Doch nicht."))
        detail = await ticket(daemon, 10000)
        assert detail["status"] == "open"
        assert "reopened" in detail["articles"][-1]["flags"]


async def test_reply_long_after_closing_opens_a_new_ticket_that_refers_to_the_old(tmp_path: Path) -> None:
    """Past the reopen window, a reply opens a new ticket; operators see which closed ticket it follows."""
    async with desk(tmp_path, tickets={"reopen_window_days": 0.0}) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await operator_says(daemon, address, "#close")
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Backup fehlt", body="Wieder weg."))
        assert (await ticket(daemon, 10000))["status"] == "closed"
        new = await ticket(daemon, 10001)
        assert new["subject"] == "Re: Backup fehlt" and new["follows"] == 10000
        assert "follows-closed-ticket:10000" in new["articles"][0]["flags"]
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        assert "Hinweis: Folgt auf Ticket [MH#10000], das schon länger geschlossen ist." in body_of(parsed(notices[-1]))


async def test_operators_out_of_office_reply_never_reaches_the_customer(tmp_path: Path) -> None:
    """An operator's auto-reply to a notice (with a valid token) is stored, and customers get nothing."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await deliver(daemon, make_mail(OPERATOR, to=address, subject="Abwesend: Backup fehlt",
                                        body="Ich bin bis 3.1. nicht im Büro.",
                                        headers={"Auto-Submitted": "auto-replied"}),
                      mail_from="", rcpt=[address])
        await quiet(daemon)
        assert len(customer_mails(sink)) == 1  # the acknowledgement only
        assert (await ticket(daemon, 10000))["articles"][-1]["kind"] == "auto-reply"


async def test_operator_text_below_an_unquoted_header_block_is_not_sent_on(tmp_path: Path) -> None:
    """When no new text stands above the quoted notice, nothing internal goes to the customer and the operator is told."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        body = ("Von: Support <support@example.net>\nGesendet: Montag, 2. Februar 2026 10:00\n"
                "An: op@provider.example\nBetreff: [MH#10000] Neues Ticket: Backup fehlt\n\n"
                "Von: anna@customer.example (UNGEPRÜFTE Adresse)\nWeisung: NEIN\n\nDas Backup ist wieder da.\n")
        await operator_says(daemon, address, body)
        assert len(customer_mails(sink)) == 1
        told = await mails_to(sink, 2, where=to(OPERATOR))
        assert "Nichts gesendet" in parsed(told[-1])["Subject"]
        assert (await ticket(daemon, 10000))["articles"][-1]["kind"] == "note"


@pytest.mark.parametrize("headers, sender", [({"X-Loop": "support@example.net"}, "anna@customer.example"),
                                             ({}, "helpdesk@example.net")])
async def test_our_own_mail_coming_back_tells_nobody(tmp_path: Path, headers: dict[str, str], sender: str) -> None:
    """Mail with our own X-Loop or from our own address is stored, and no operator notice is sent (no loop)."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(sender, subject="Loop?", headers=headers), mail_from=sender)
        await quiet(daemon)
        assert sink.received == []


async def test_operator_reply_through_exchange_with_suppress_header_reaches_the_customer(tmp_path: Path) -> None:
    """Exchange's X-Auto-Response-Suppress on an operator's real reply does not make it an auto-reply."""
    async with desk(tmp_path) as (daemon, sink):
        address = await operator_token(daemon, sink)
        await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: [MH#10000] Backup fehlt",
                                        body="Ist erledigt.", headers={"X-Auto-Response-Suppress": "All"}),
                      mail_from=OPERATOR, rcpt=[address])
        await quiet(daemon)
        assert any("Ist erledigt." in text for text in customer_mails(sink))
