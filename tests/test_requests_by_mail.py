"""DESIGN §1 by mail: inactive users, instructions from authorised contacts, other organisations' VMs."""

from __future__ import annotations

from pathlib import Path

from mailticketd.app import Daemon
from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_threading import ticket, tickets


async def organisation(daemon: Daemon, members: dict[str, dict]) -> None:
    async with daemon.db.transaction() as store:
        org = await store.organisations.create("Kunde GmbH")
        for address, fields in members.items():
            await store.users.create(address, organisation_id=org.id, **({"status": "active"} | fields))
        other = await store.organisations.create("Andere AG")
        await store.vms.add("de-be-srv-4711", other.id)


async def test_inactive_user_is_kept_and_told_neutrally(tmp_path: Path) -> None:
    """A deactivated user's mail is stored and shown to operators as inactive; the sender never reads "inactive"."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"weg@kunde.example": {"status": "inactive"}})
        await deliver(daemon, make_mail("weg@kunde.example", subject="Noch eine Frage"))
        [answer] = await mails_to(sink, 1, where=to("weg@kunde.example"))
        text = body_of(parsed(answer)).lower()
        assert "nicht freigeschaltet" in text and "organisation" in text
        assert "inaktiv" not in text and "inactive" not in text
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "INAKTIVER Benutzer" in body_of(parsed(notice))
        [only] = await tickets(daemon)
        assert (await ticket(daemon, only["number"]))["articles"][0]["author_status"] == "inactive"


async def test_inactive_user_cannot_reply_into_their_old_ticket(tmp_path: Path) -> None:
    """After deactivation, a reply to the user's own ticket opens a new one; the old stays with the organisation."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"weg@kunde.example": {}})
        await deliver(daemon, make_mail("weg@kunde.example", subject="Alt"))
        async with daemon.db.transaction() as store:
            await store.conn.execute("UPDATE users SET status = 'inactive' WHERE address = 'weg@kunde.example'")
        await deliver(daemon, make_mail("weg@kunde.example", subject="Re: [MH#10000] Alt"))
        all_tickets = await tickets(daemon)
        assert [(t["number"], t["organisation"]) for t in all_tickets] == [(10000, "Kunde GmbH"), (10001, None)]


async def test_operators_see_whether_a_request_is_an_instruction(tmp_path: Path) -> None:
    """An authorised contact's mail is marked as an instruction; a normal user's as not authorised to instruct."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"chef@kunde.example": {"authorised": True, "role": "manager"},
                                    "azubi@kunde.example": {}})
        await deliver(daemon, make_mail("chef@kunde.example", subject="Bitte Firewall öffnen"))
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Bitte Firewall öffnen"))
        first, second = await mails_to(sink, 2, where=to(OPERATOR))
        assert "Weisung: ja, von einem weisungsberechtigten Kontakt" in body_of(parsed(first)).splitlines()
        assert "Weisung: NEIN, nicht weisungsberechtigt" in body_of(parsed(second)).splitlines()  # a line of its own


async def test_vm_of_another_organisation_is_flagged_only_for_operators(tmp_path: Path) -> None:
    """Operators see the other organisation's VM flagged; the customer's acknowledgement does not mention it."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"chef@kunde.example": {}})
        await deliver(daemon, make_mail("chef@kunde.example", subject="Neustart", body="Bitte de-be-srv-4711 neu starten."))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "VM: de-be-srv-4711 (Andere AG) [other-organisation]" in body_of(parsed(notice)).splitlines()
        [ack] = await mails_to(sink, 1, where=to("chef@kunde.example"))
        assert b"Andere AG" not in ack.raw and b"other-organisation" not in ack.raw
        await quiet(daemon)


async def _operator_answers(daemon: Daemon, sink, body: str) -> None:
    [notice] = await mails_to(sink, 1, where=to(OPERATOR))
    address = str(parsed(notice)["Reply-To"])
    await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: Neuer Kollege", body=body),
                  mail_from=OPERATOR, rcpt=[address])
    await quiet(daemon)


async def test_operator_carries_out_a_request_by_mail(tmp_path: Path) -> None:
    """``#adduser`` and ``#authorise`` act on the ticket's organisation, are audited, and the operator gets the result."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"chef@kunde.example": {"authorised": True, "role": "manager"}})
        await deliver(daemon, make_mail("chef@kunde.example", subject="Neuer Kollege",
                                        body="Bitte neu@kunde.example anlegen und berechtigen."))
        await _operator_answers(daemon, sink, "#adduser neu@kunde.example\n#authorise neu@kunde.example\n"
                                              "Erledigt, der Kollege bekommt einen Link.")
        async with daemon.db.read() as store:
            user = await store.users.by_address("neu@kunde.example")
            audit = await store.conn.execute_fetchall("SELECT actor, action FROM audit_log ORDER BY id")
        assert user is not None and user.organisation == "Kunde GmbH" and user.authorised
        assert [tuple(row) for row in audit] == [(OPERATOR, "user.add"), (OPERATOR, "user.authorise")]
        [result] = [item for item in sink.received if OPERATOR in item.rcpt_tos
                    and "Erledigt" in parsed(item)["Subject"]]
        assert "#adduser neu@kunde.example: erledigt" in body_of(parsed(result))
        assert any("Erledigt, der Kollege" in body_of(parsed(item)) for item in sink.received
                   if "chef@kunde.example" in item.rcpt_tos)
        assert [item for item in sink.received if "neu@kunde.example" in item.rcpt_tos]  # the verification mail


async def test_refused_request_changes_nothing_and_sends_nothing_to_the_customer(tmp_path: Path) -> None:
    """A command the rules refuse (another organisation's user as primary contact) undoes all and tells only the operator."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon, {"chef@kunde.example": {"authorised": True, "role": "manager"}})
        async with daemon.db.transaction() as store:
            other = await store.organisations.by_name("Andere AG")
            await store.users.create("fremd@andere.example", organisation_id=other.id, status="active")
        await deliver(daemon, make_mail("chef@kunde.example", subject="Neuer Kollege"))
        await _operator_answers(daemon, sink, "#adduser neu@kunde.example\n#primary fremd@andere.example\nErledigt.")
        async with daemon.db.read() as store:
            assert await store.users.by_address("neu@kunde.example") is None
            organisation_now = await store.organisations.by_name("Kunde GmbH")
        assert organisation_now.primary_contact_id is None
        [result] = [item for item in sink.received if OPERATOR in item.rcpt_tos
                    and "Abgelehnt" in parsed(item)["Subject"]]
        text = body_of(parsed(result))
        assert "#primary fremd@andere.example: abgelehnt: fremd@andere.example gehört nicht zu Kunde GmbH." in text
        assert not [item for item in sink.received if "chef@kunde.example" in item.rcpt_tos
                    and b"Erledigt." in item.raw]
        assert (await ticket(daemon, 10000))["articles"][-1]["kind"] == "note"


async def test_staff_registered_manager_acts_before_verifying(tmp_path: Path) -> None:
    """A manager named in ``org create`` may reply to a colleague's ticket before clicking the link: staff registered them."""
    from mailticketd.directory.admin import DirectoryAdmin
    from mailticketd.clock import utc_now
    async with desk(tmp_path) as (daemon, sink):
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
            await admin.create_organisation("Kunde GmbH", commercial="chef@kunde.example",
                                            technical="technik@kunde.example")
            await admin.add_user("azubi@kunde.example", "Kunde GmbH")
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Frage"))
        await deliver(daemon, make_mail("chef@kunde.example", subject="Re: [MH#10000] Frage"))
        assert len(await tickets(daemon)) == 1
        assert [a["author_status"] for a in (await ticket(daemon, 10000))["articles"]] == ["user", "authorised"]
