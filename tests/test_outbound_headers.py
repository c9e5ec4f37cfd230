"""What customers and the organisation's primary contact receive, and how it is encoded."""

from __future__ import annotations

import base64
from pathlib import Path

from mailticketd.app import Daemon
from mailticketd.mail.templates import TemplateError, Templates
from tests.helpers import make_config, make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_threading import ticket

import pytest


async def add_org(daemon: Daemon, members: dict[str, tuple[str, str | None]], primary: str) -> None:
    """Members: address → (role, language)."""
    async with daemon.db.transaction() as store:
        organisation = await store.organisations.create("Kunde GmbH")
        for address, (role, language) in members.items():
            user = await store.users.create(address, name="Jörg Müller", organisation_id=organisation.id,
                                            status="active", role=role, language=language)
            if address == primary:
                await store.organisations.set_primary_contact(organisation.id, user.id)


async def test_german_subjects_and_names_are_encoded_for_mail_clients(tmp_path: Path) -> None:
    """Umlauts in the subject and the recipient's name go out as RFC 2047 UTF-8 and decode back unchanged."""
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"joerg@kunde.example": ("user", "de")}, primary="")
        await deliver(daemon, make_mail("joerg@kunde.example", subject="Größere Festplatte für de-fr-srv-0815"))
        [ack] = await mails_to(sink, 1, where=to("joerg@kunde.example"))
        assert b"=?utf-8?" in ack.raw.split(b"\r\n\r\n", 1)[0].lower()
        message = parsed(ack)
        assert message["Subject"] == "[MH#10000] Größere Festplatte für de-fr-srv-0815"
        assert message["To"].addresses[0].display_name == "Jörg Müller"
        assert "Guten Tag Jörg Müller," in body_of(message)
        assert "/verify/" not in body_of(message)  # a verified user gets no verification link


async def test_english_user_gets_english_mail(tmp_path: Path) -> None:
    """A user whose language is English is acknowledged in English."""
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"jo@kunde.example": ("user", "en")}, primary="")
        await deliver(daemon, make_mail("jo@kunde.example", subject="Disk"))
        [ack] = await mails_to(sink, 1, where=to("jo@kunde.example"))
        assert "thank you for your message" in body_of(parsed(ack))


async def test_primary_contact_gets_a_copy_of_new_tickets_of_the_organisation(tmp_path: Path) -> None:
    """The primary contact (a manager) receives a copy of a colleague's new ticket; not of follow-ups."""
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"chef@kunde.example": ("manager", None), "mitarbeiter@kunde.example": ("user", None)},
                      primary="chef@kunde.example")
        await deliver(daemon, make_mail("mitarbeiter@kunde.example", subject="Neuer Server", body="Bitte anlegen."))
        [copy] = await mails_to(sink, 1, where=to("chef@kunde.example"))
        text = body_of(parsed(copy))
        assert "Primärkontakt" in text and "Bitte anlegen." in text and "mitarbeiter@kunde.example" in text
        await deliver(daemon, make_mail("mitarbeiter@kunde.example", subject="Re: [MH#10000] Neuer Server"))
        await quiet(daemon)
        assert len([i for i in sink.received if "chef@kunde.example" in i.rcpt_tos]) == 1


async def test_primary_contact_who_is_not_a_manager_gets_the_copy_but_no_other_colleague(tmp_path: Path) -> None:
    """The primary contact is the first to receive what the provider sends, whatever their role (issue 10); a
    colleague who is not the primary contact gets nothing of the new ticket."""
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"kontakt@kunde.example": ("user", None), "mitarbeiter@kunde.example": ("user", None),
                               "andere@kunde.example": ("user", None)}, primary="kontakt@kunde.example")
        await deliver(daemon, make_mail("mitarbeiter@kunde.example", subject="Geheim"))
        await quiet(daemon)
        assert len([i for i in sink.received if "kontakt@kunde.example" in i.rcpt_tos]) == 1
        assert not [i for i in sink.received if "andere@kunde.example" in i.rcpt_tos]


async def test_copies_to_the_primary_contact_can_be_turned_off(tmp_path: Path) -> None:
    """``[notify] primary_contact_copies = false`` sends the primary contact nothing."""
    async with desk(tmp_path, notify={"primary_contact_copies": False}) as (daemon, sink):
        await add_org(daemon, {"chef@kunde.example": ("manager", None), "mitarbeiter@kunde.example": ("user", None)},
                      primary="chef@kunde.example")
        await deliver(daemon, make_mail("mitarbeiter@kunde.example", subject="Neuer Server"))
        await quiet(daemon)
        assert not [i for i in sink.received if "chef@kunde.example" in i.rcpt_tos]


async def test_inactive_participant_gets_no_operator_replies(tmp_path: Path) -> None:
    """A participant who left the organisation receives nothing more of the ticket."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail("anna@customer.example", cc="left@customer.example", subject="Hallo"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        async with daemon.db.transaction() as store:
            await store.conn.execute("UPDATE users SET status = 'inactive' WHERE address = 'left@customer.example'")
        address = str(parsed(notice)["Reply-To"])
        await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: Hallo", body="Antwort."),
                      mail_from=OPERATOR, rcpt=[address])
        await quiet(daemon)
        recipients = [i.rcpt_tos[0] for i in sink.received if b"Antwort." in i.raw]
        assert recipients == ["anna@customer.example"]


async def test_operator_authenticated_by_our_mta_needs_no_token(tmp_path: Path) -> None:
    """With trusted Authentication-Results, an operator's DMARC-passing mail with the tag acts on the ticket."""
    trusted = {"addresses": [OPERATOR], "authserv_id": "mx.example.net", "trust_authentication_results": True}
    async with desk(tmp_path, operators=trusted) as (daemon, sink):
        await deliver(daemon, make_mail("anna@customer.example", subject="Hallo"))
        verdict = "mx.example.net; dkim=pass header.d=provider.example; dmarc=pass header.from=provider.example"
        await deliver(daemon, make_mail(OPERATOR, subject="Re: [MH#10000] Hallo", body="Erledigt.",
                                        headers={"Authentication-Results": verdict}), mail_from=OPERATOR)
        await quiet(daemon)
        detail = await ticket(daemon, 10000)
        assert detail["articles"][-1]["author_status"] == "operator"
        assert [i.rcpt_tos for i in sink.received if b"Erledigt." in i.raw] == [("anna@customer.example",)]
        forged = "mx.example.net; dmarc=fail header.from=provider.example"
        await deliver(daemon, make_mail(OPERATOR, subject="Re: [MH#10000] Hallo", body="Gefälscht.",
                                        headers={"Authentication-Results": forged}), mail_from=OPERATOR)
        assert len((await ticket(daemon, 10000))["articles"]) == 2


def test_missing_or_broken_template_stops_start_up(tmp_path: Path) -> None:
    """A template folder without ``status.txt``, or with a syntax error, is refused before any mail."""
    source = Path(__file__).resolve().parents[1] / "templates"
    for language in ("de", "en"):
        (tmp_path / language).mkdir()
        for path in (source / language).glob("*.txt"):
            (tmp_path / language / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    Templates(tmp_path).check()
    (tmp_path / "en" / "status.txt").unlink()
    with pytest.raises(TemplateError, match="en/status.txt: missing"):
        Daemon(make_config(tmp_path, mail={"templates": str(tmp_path)}))
    (tmp_path / "en" / "status.txt").write_text("{% block subject %}{{ broken {% endblock %}", encoding="utf-8")
    with pytest.raises(TemplateError, match="en/status.txt"):
        Templates(tmp_path).check()


async def test_the_first_mails_of_a_new_ticket_share_its_outlook_conversation(tmp_path: Path) -> None:
    """The operator notice and the acknowledgement of a new ticket carry Thread-Index children of the one base the
    ticket keeps, so Outlook files them, and every later mail of the ticket, in one conversation."""
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"joerg@kunde.example": ("user", "de")}, primary="")
        await deliver(daemon, make_mail("joerg@kunde.example", subject="de-fr-srv-0815 steht"))
        [ack] = await mails_to(sink, 1, where=to("joerg@kunde.example"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        async with daemon.db.read() as store:
            stored = await store.tickets.by_number(10000)
        assert stored is not None and stored.thread_index
        base = base64.b64decode(stored.thread_index)[:22]
        for mail in (ack, notice):
            index = base64.b64decode(str(parsed(mail)["Thread-Index"]))
            assert index[:22] == base and len(index) == 27


async def test_a_senders_overlong_thread_index_is_not_carried_into_the_tickets_mails(tmp_path: Path) -> None:
    """A Thread-Index of 12 KB (well formed, some 2,000 replies deep, or written by an attacker) is not continued:
    the ticket starts a conversation of its own, and its mails carry an index of 27 bytes, not one 5 bytes longer
    than what the sender wrote."""
    overlong = base64.b64encode(bytes(22 + 5 * 1800)).decode("ascii")
    async with desk(tmp_path) as (daemon, sink):
        await add_org(daemon, {"joerg@kunde.example": ("user", "de")}, primary="")
        await deliver(daemon, make_mail("joerg@kunde.example", subject="de-fr-srv-0815 steht",
                                        headers={"Thread-Index": overlong}))
        [ack] = await mails_to(sink, 1, where=to("joerg@kunde.example"))
        async with daemon.db.read() as store:
            stored = await store.tickets.by_number(10000)
    assert stored is not None and stored.thread_index and len(stored.thread_index) < 100
    index = base64.b64decode(str(parsed(ack)["Thread-Index"]))
    assert index[:22] == base64.b64decode(stored.thread_index) and len(index) == 27
