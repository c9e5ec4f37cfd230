"""Mail becomes tickets and follow-ups: threading by tag and by references, and who may thread."""

from __future__ import annotations

from email.header import Header
from typing import Any

import pytest

from mailticketd.app import Daemon
from mailticketd.views import ticket_detail_view, tickets_view, users_view
from tests.helpers import make_mail, message_id_of, send, settle

CUSTOMER = "anna@customer.example"


async def deliver(daemon: Daemon, raw: bytes, **kwargs: Any) -> None:
    await send(daemon.smtp_port, raw, **kwargs)
    await settle(daemon)


async def tickets(daemon: Daemon) -> list[dict[str, Any]]:
    async with daemon.db.read() as store:
        return await tickets_view(daemon.config, store)


async def ticket(daemon: Daemon, number: int) -> dict[str, Any]:
    async with daemon.db.read() as store:
        view = await ticket_detail_view(daemon.config, store, number)
    assert view is not None
    return view


async def open_ticket(daemon: Daemon, sender: str = CUSTOMER, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    """Send a first mail and return the ticket it opened, with the raw mail."""
    raw = make_mail(sender, **kwargs)
    await deliver(daemon, raw)
    return (await tickets(daemon))[-1], raw


async def add_organisation(daemon: Daemon, name: str, members: dict[str, str]) -> None:
    """Create an organisation with active members: address → role."""
    async with daemon.db.transaction() as store:
        organisation = await store.organisations.create(name)
        for address, role in members.items():
            await store.users.create(address, organisation_id=organisation.id, status="active", role=role,
                                     authorised=role == "manager")  # the manager role goes with the authorisation


async def test_new_mail_opens_a_ticket_with_a_tag(daemon: Daemon) -> None:
    """A first mail opens ticket 10000 tagged [MH#10000], with the sender as requester and the text stored."""
    first, _ = await open_ticket(daemon, subject="Server down")
    assert first["number"] == 10000
    assert first["tag"] == "[MH#10000]"
    assert first["subject"] == "Server down"
    assert first["requester"] == CUSTOMER
    detail = await ticket(daemon, 10000)
    assert detail["articles"][0]["text"].strip() == "Hello, de-fr-srv-0815 does not answer."
    assert detail["articles"][0]["author"] == CUSTOMER


async def test_reply_with_the_tag_is_a_follow_up(daemon: Daemon) -> None:
    """``Re: [MH#10000]`` from the requester lands in the same ticket."""
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail(CUSTOMER, subject=f"Re: {first['tag']} Server down", body="Still down."))
    assert len(await tickets(daemon)) == 1
    assert len((await ticket(daemon, first["number"]))["articles"]) == 2


async def test_german_reply_chains_and_odd_spacing_find_the_tag(daemon: Daemon) -> None:
    """``AW: WG: RE: Fwd:`` in front and ``[mh# 10000 ]`` in lower case still name the ticket."""
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail(CUSTOMER, subject="AW: WG: RE: Fwd: [MH#10000] Server down"))
    await deliver(daemon, make_mail(CUSTOMER, subject="AW: Server down [mh# 10000 ]"))
    assert len(await tickets(daemon)) == 1
    assert len((await ticket(daemon, first["number"]))["articles"]) == 3


async def test_tag_in_an_encoded_word_subject_is_found(daemon: Daemon) -> None:
    """A subject sent as an RFC 2047 encoded word (umlauts) still threads by its tag."""
    first, _ = await open_ticket(daemon, subject="Grüße")
    raw = make_mail(CUSTOMER, subject="placeholder")
    encoded = Header("AW: [MH#10000] Grüße aus Köln", "utf-8").encode().encode()
    raw = raw.replace(b"Subject: placeholder", b"Subject: " + encoded)
    assert b"=?utf-8?" in raw
    await deliver(daemon, raw)
    detail = await ticket(daemon, first["number"])
    assert [a["subject"] for a in detail["articles"]][-1] == "AW: [MH#10000] Grüße aus Köln"


async def test_reply_with_only_in_reply_to_is_a_follow_up(daemon: Daemon) -> None:
    """A reply whose subject lost the tag threads by In-Reply-To a stored Message-ID."""
    first, raw = await open_ticket(daemon)
    await deliver(daemon, make_mail(CUSTOMER, subject="Re: Server down", in_reply_to=message_id_of(raw)))
    assert len(await tickets(daemon)) == 1
    assert len((await ticket(daemon, first["number"]))["articles"]) == 2


async def test_reply_with_only_references_is_a_follow_up(daemon: Daemon) -> None:
    """References (comma-separated, as some clients write them) name the thread when In-Reply-To is missing."""
    first, raw = await open_ticket(daemon)
    references = f"<unknown@elsewhere.example>, <{message_id_of(raw)}>"
    await deliver(daemon, make_mail(CUSTOMER, subject="Server down", references=references))
    assert len(await tickets(daemon)) == 1


async def test_same_subject_without_a_reference_opens_a_new_ticket(daemon: Daemon) -> None:
    """Two mails with the same subject and no reference are two tickets: never threaded by subject text."""
    await open_ticket(daemon, subject="Backup failed")
    await open_ticket(daemon, subject="Backup failed")
    assert [t["subject"] for t in await tickets(daemon)] == ["Backup failed", "Backup failed"]


async def test_tag_of_an_unknown_ticket_opens_a_new_ticket(daemon: Daemon) -> None:
    """A tag naming no ticket is ignored: the mail opens a new one."""
    await open_ticket(daemon, subject="[MH#99999] Hello")
    assert [t["number"] for t in await tickets(daemon)] == [10000]


async def test_forged_tag_from_a_stranger_opens_a_new_ticket_and_reveals_nothing(daemon: Daemon) -> None:
    """A stranger naming someone else's ticket gets a new ticket without that tag; operators see the attempt."""
    first, _ = await open_ticket(daemon, subject="Private matter")
    await deliver(daemon, make_mail("mallory@evil.example", subject=f"Re: {first['tag']} Private matter",
                                    body="Please send me the details."))
    all_tickets = await tickets(daemon)
    assert len(all_tickets) == 2
    stranger = all_tickets[1]
    assert stranger["requester"] == "mallory@evil.example"
    assert first["tag"] not in stranger["subject"]
    assert len((await ticket(daemon, first["number"]))["articles"]) == 1
    flags = (await ticket(daemon, stranger["number"]))["articles"][0]["flags"]
    assert f"refused-reference:{first['number']}:tag" in flags


async def test_stranger_with_a_stolen_message_id_opens_a_new_ticket(daemon: Daemon) -> None:
    """In-Reply-To a ticket's Message-ID proves nothing: a stranger still gets a new ticket."""
    first, raw = await open_ticket(daemon)
    await deliver(daemon, make_mail("mallory@evil.example", in_reply_to=message_id_of(raw)))
    assert len(await tickets(daemon)) == 2
    assert len((await ticket(daemon, first["number"]))["articles"]) == 1


async def test_reply_to_header_is_not_identity(daemon: Daemon) -> None:
    """A mail from a stranger with ``Reply-To`` the requester's address is the stranger's: new ticket."""
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail("mallory@evil.example", subject=f"Re: {first['tag']}",
                                    headers={"Reply-To": CUSTOMER}))
    all_tickets = await tickets(daemon)
    assert len(all_tickets) == 2
    assert all_tickets[1]["requester"] == "mallory@evil.example"


async def test_manager_may_reply_to_a_colleagues_ticket(daemon: Daemon) -> None:
    """A manager of the ticket's organisation threads into a colleague's ticket."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user", "boss@customer.example": "manager"})
    first, _ = await open_ticket(daemon)
    assert first["organisation"] == "Customer GmbH"
    await deliver(daemon, make_mail("boss@customer.example", subject=f"Re: {first['tag']}"))
    assert len(await tickets(daemon)) == 1
    detail = await ticket(daemon, first["number"])
    assert [a["author"] for a in detail["articles"]] == [CUSTOMER, "boss@customer.example"]


async def test_normal_colleague_may_not_reply_to_someone_elses_ticket(daemon: Daemon) -> None:
    """A normal user of the same organisation who is not a participant gets a new ticket."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user", "colleague@customer.example": "user"})
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail("colleague@customer.example", subject=f"Re: {first['tag']}"))
    assert len(await tickets(daemon)) == 2
    assert len((await ticket(daemon, first["number"]))["articles"]) == 1


async def test_manager_of_another_organisation_may_not_reply(daemon: Daemon) -> None:
    """Being a manager somewhere else gives no access to this organisation's tickets."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user"})
    await add_organisation(daemon, "Other AG", {"boss@other.example": "manager"})
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail("boss@other.example", subject=f"Re: {first['tag']}"))
    assert len(await tickets(daemon)) == 2


async def test_unknown_cc_addresses_become_unverified_participants(daemon: Daemon) -> None:
    """Every unknown CC address is registered once as unverified and takes part in the ticket."""
    first, _ = await open_ticket(daemon, cc="Bob <Bob@Customer.example>, carol@partner.example, support@example.net")
    users = {u["address"]: u for u in await _users(daemon)}
    assert set(users) == {CUSTOMER, "bob@customer.example", "carol@partner.example"}
    assert all(u["status"] == "unverified" for u in users.values())
    detail = await ticket(daemon, first["number"])
    roles = {p["address"]: p["role"] for p in detail["participants"]}
    assert roles == {CUSTOMER: "requester", "bob@customer.example": "cc", "carol@partner.example": "cc"}


async def test_cc_participant_may_reply_and_is_marked_unverified(daemon: Daemon) -> None:
    """An unverified CC participant replying threads into the ticket, labelled unverified."""
    first, _ = await open_ticket(daemon, cc="bob@customer.example")
    await deliver(daemon, make_mail("bob@customer.example", subject=f"Re: {first['tag']}"))
    detail = await ticket(daemon, first["number"])
    assert [a["author_status"] for a in detail["articles"]] == ["unverified", "unverified"]
    assert len(await tickets(daemon)) == 1


async def test_known_users_are_recognised_case_insensitively(daemon: Daemon) -> None:
    """``ANNA@Customer.Example`` is the registered user anna@customer.example, not a new one."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user"})
    await open_ticket(daemon, sender="Anna <ANNA@Customer.Example>")
    users = await _users(daemon)
    assert [(u["address"], u["status"], u["organisation"]) for u in users] == [
        (CUSTOMER, "active", "Customer GmbH")]


async def test_operator_address_without_proof_is_a_stranger(daemon: Daemon) -> None:
    """A bare ``From:`` of an operator address does not open a customer's ticket."""
    first, _ = await open_ticket(daemon)
    await deliver(daemon, make_mail("op@provider.example", subject=f"Re: {first['tag']}"))
    all_tickets = await tickets(daemon)
    assert len(all_tickets) == 2
    flags = (await ticket(daemon, all_tickets[1]["number"]))["articles"][0]["flags"]
    assert "operator-address-without-proof" in flags


async def test_same_mail_twice_makes_one_ticket_and_one_article(daemon: Daemon) -> None:
    """One Message-ID from one sender, delivered to two support addresses and resent, is stored once."""
    raw = make_mail(CUSTOMER, message_id="once@customer.example")
    await send(daemon.smtp_port, raw, rcpt=["support@example.net"])
    await send(daemon.smtp_port, raw, rcpt=["helpdesk@example.net"])
    await deliver(daemon, raw)
    all_tickets = await tickets(daemon)
    assert len(all_tickets) == 1
    assert len((await ticket(daemon, all_tickets[0]["number"]))["articles"]) == 1


async def test_same_message_id_from_another_sender_is_not_a_duplicate(daemon: Daemon) -> None:
    """A reused Message-ID from a different author is a different mail and is kept."""
    await deliver(daemon, make_mail(CUSTOMER, message_id="same@example.org"))
    await deliver(daemon, make_mail("other@customer.example", message_id="same@example.org"))
    assert len(await tickets(daemon)) == 2


@pytest.mark.sqlite_only
async def test_attachments_are_stored_once_per_content(daemon: Daemon) -> None:
    """The same file sent twice is one blob, listed on both articles with name, size and sha256."""
    pdf = b"%PDF-1.4 invoice " * 100
    first, _ = await open_ticket(daemon, attachments=[("rechnung.pdf", "application/pdf", pdf)])
    await deliver(daemon, make_mail(CUSTOMER, subject=f"Re: {first['tag']}",
                                    attachments=[("kopie.pdf", "application/pdf", pdf)]))
    detail = await ticket(daemon, first["number"])
    files = [a["attachments"] for a in detail["articles"]]
    assert [f[0]["name"] for f in files] == ["rechnung.pdf", "kopie.pdf"]
    assert files[0][0]["size"] == len(pdf)
    assert files[0][0]["sha256"] == files[1][0]["sha256"]
    import sqlite3
    with sqlite3.connect(daemon.config.storage.database) as conn:
        assert conn.execute("SELECT count(*) FROM attachment_blobs").fetchone()[0] == 1


async def test_bounce_is_stored_but_its_sender_is_not_registered(daemon: Daemon) -> None:
    """A MAILER-DAEMON mail with an empty return path is kept, marked as a bounce, and makes no user."""
    raw = make_mail("MAILER-DAEMON@mx.customer.example", subject="Undelivered Mail Returned to Sender")
    await deliver(daemon, raw, mail_from="")
    assert await _users(daemon) == []
    detail = await ticket(daemon, (await tickets(daemon))[0]["number"])
    assert detail["articles"][0]["kind"] == "bounce"


async def _users(daemon: Daemon) -> list[dict[str, Any]]:
    async with daemon.db.read() as store:
        return await users_view(store)


async def test_forwarded_mail_opens_a_ticket_showing_the_forwarded_text(daemon: Daemon) -> None:
    """A ``WG:`` forward that opens a ticket keeps the forwarded mail in the visible text; a reply's quote is cut."""
    body = ("Bitte anschauen.\n\n---------- Forwarded message ---------\nFrom: Monitoring <mon@customer.example>\n"
            "Date: Mon, 2 Feb 2026 at 10:00\nSubject: de-fr-srv-0815 down\nTo: <anna@customer.example>\n\n"
            "Host de-fr-srv-0815 is DOWN\n")
    await deliver(daemon, make_mail(CUSTOMER, subject="WG: de-fr-srv-0815 down", body=body))
    detail = await ticket(daemon, 10000)
    assert "Host de-fr-srv-0815 is DOWN" in detail["articles"][0]["visible_text"]
    quoted = "Danke.\n\nAm 02.02.2026 um 10:00 schrieb Support:\n> Host de-fr-srv-0815 is DOWN\n"
    await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] WG: de-fr-srv-0815 down", body=quoted))
    assert (await ticket(daemon, 10000))["articles"][1]["visible_text"] == "Danke."
