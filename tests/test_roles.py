"""Issue 10, roles and requests: the manager role goes with the authorisation, requests by mail need an
authorised requester, and an organisation left without authorised contacts is noticed at once."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.directory.models import User
from mailticketd.storage import SqliteDatabase as Database
from mailticketd.storage.db import _statements
from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_staff_cli import CHEF, ORG, TECH, create_org, ok, refused, run

KUNDE = "Kunde GmbH"


# -- 1. manager goes with authorisation ---------------------------------------------------------------------


def test_only_authorised_contacts_become_managers_through_the_cli(tmp_path: Path) -> None:
    """``user add --manager`` and ``user role … manager`` are refused for someone not authorised, naming
    ``user authorise``; authorising makes a manager and deauthorising takes the role away."""
    create_org(tmp_path)
    assert "mailticketd user authorise bob@customer.example" in refused(
        tmp_path, "user", "add", "bob@customer.example", "--org", ORG, "--manager")
    ok(tmp_path, "user", "add", "bob@customer.example", "--org", ORG)
    assert refused(tmp_path, "user", "role", "bob@customer.example", "manager") == (
        "user 'bob@customer.example' is not an authorised contact, and only authorised contacts may be managers: "
        "use 'mailticketd user authorise bob@customer.example'")
    user = ok(tmp_path, "user", "authorise", "bob@customer.example")
    assert (user["authorised"], user["role"]) == (True, "manager")
    assert "bob@customer.example" in ok(tmp_path, "org", "show", ORG)["managers"]
    assert "user deauthorise" in refused(tmp_path, "user", "role", "bob@customer.example", "user")
    user = ok(tmp_path, "user", "deauthorise", "bob@customer.example")
    assert (user["authorised"], user["role"]) == (False, "user")
    assert ok(tmp_path, "org", "show", ORG)["managers"] == [CHEF, TECH]
    added = ok(tmp_path, "user", "add", "sue@customer.example", "--org", ORG, "--authorised")
    assert added["role"] == "manager"


def test_a_temporary_authorisation_gives_the_manager_role_until_it_ends() -> None:
    """A temporarily authorised manager sees all tickets through their last day and is a normal user after it."""
    today = datetime.now(timezone.utc).date()
    manager = User(id=1, address="md@kunde.example", name="", organisation_id=7, organisation=KUNDE,
                   status="active", role="manager", authorised=True, monitoring_contact=False, language=None,
                   authorised_until=today.isoformat(), authorisation_note="register extract")
    assert manager.is_manager
    ended = User(**{**manager.__dict__, "authorised_until": (today - timedelta(days=1)).isoformat()})
    assert not ended.is_manager
    assert not User(**{**manager.__dict__, "authorised": False, "authorised_until": None}).is_manager


async def test_temporary_manager_acts_on_colleagues_tickets_only_while_authorised(tmp_path: Path) -> None:
    """Through the daemon: a temporary authorisation lets its holder reply to a colleague's ticket; once it has
    ended, the same reply opens a new ticket instead."""
    async with desk(tmp_path) as (daemon, sink):
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test",
                                   now=datetime(2020, 1, 1, tzinfo=timezone.utc))
            await admin.create_organisation(KUNDE, commercial="chef@kunde.example", technical="tech@kunde.example")
            await admin.add_user("md@kunde.example", KUNDE)
            await admin.add_user("azubi@kunde.example", KUNDE)
            for address in ("chef@kunde.example", "tech@kunde.example"):
                await admin.deactivate(address)
            user = await admin.authorise_temporarily("md@kunde.example", until=date(2020, 2, 1), note="extract")
        assert user.role == "manager" and not user.is_manager  # the end lies in the past
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Frage"))
        await deliver(daemon, make_mail("md@kunde.example", subject="Re: [MH#10000] Frage"))
        async with daemon.db.read() as store:
            assert len(await store.tickets.list()) == 2
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
            await admin.authorise_temporarily("md@kunde.example", until=date.today() + timedelta(days=30),
                                              note="new extract")
        await deliver(daemon, make_mail("md@kunde.example", subject="Re: [MH#10000] Frage"))
        async with daemon.db.read() as store:
            assert len(await store.tickets.list()) == 2  # attached to 10000 this time


@pytest.mark.sqlite_only
async def test_migration_brings_roles_in_line_and_reports_each_change(tmp_path: Path) -> None:
    """An old database's unauthorised managers become users and its authorised users managers; every change is
    an audit entry by "migration 0006", and users already in line are left alone."""
    path = tmp_path / "old.sqlite3"
    folder = resources.files("mailticketd.storage").joinpath("migrations", "sqlite")
    with sqlite3.connect(path) as conn:
        for name in sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql")):
            if int(name[:4]) <= 4:
                for statement in _statements(folder.joinpath(name).read_text("utf-8")):
                    conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.execute("INSERT INTO organisations (name, created_at) VALUES ('Kunde GmbH', '2020-01-01')")
        for address, role, authorised, status in (("boss@kunde.example", "manager", 0, "active"),
                                                  ("chef@kunde.example", "user", 1, "active"),
                                                  ("ok@kunde.example", "manager", 1, "active"),
                                                  ("gone@kunde.example", "manager", 0, "inactive"),
                                                  ("plain@kunde.example", "user", 0, "active")):
            conn.execute("INSERT INTO users (address, organisation_id, role, authorised, status, created_at)"
                         " VALUES (?, 1, ?, ?, ?, '2020-01-01')", (address, role, authorised, status))
    async with Database(path) as db:
        async with db.read() as store:
            roles = {user.address: user.role for user in await store.users.list()}
            entries = await store.audit.list()
    assert roles == {"boss@kunde.example": "user", "chef@kunde.example": "manager", "ok@kunde.example": "manager",
                     "gone@kunde.example": "user", "plain@kunde.example": "user"}
    assert [(e.actor, e.action, e.subject, e.before["role"], e.after["role"])  # type: ignore[index]
            for e in entries] == [
        ("migration 0006", "user.role", "boss@kunde.example", "manager", "user"),
        ("migration 0006", "user.role", "chef@kunde.example", "user", "manager"),
        ("migration 0006", "user.role", "gone@kunde.example", "manager", "user")]
    assert entries[0].before == {**entries[0].after, "role": "manager"}  # type: ignore[dict-item]
    assert entries[0].after["authorised"] is False and entries[0].after["organisation"] == KUNDE  # type: ignore


# -- 2. requests need an authorised requester ---------------------------------------------------------------


async def _kunde(daemon: Daemon) -> None:
    """Kunde GmbH: chef (authorised manager, primary contact) and azubi (a normal user)."""
    async with daemon.db.transaction() as store:
        admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
        await admin.create_organisation(KUNDE, commercial="chef@kunde.example", technical="chef@kunde.example")
        await admin.add_user("azubi@kunde.example", KUNDE, name="Azubi")
    await quiet(daemon)


async def _answer(daemon: Daemon, sink: object, body: str, *, number: int = 10000) -> None:
    """The operator answers the notice of ticket ``number`` with ``body``."""
    notices = [item for item in sink.received  # type: ignore[attr-defined]
               if OPERATOR in item.rcpt_tos and f"#{number}]" in str(parsed(item)["Subject"])]
    address = str(parsed(notices[0])["Reply-To"])
    await deliver(daemon, make_mail(OPERATOR, to=address, subject=f"AW: [MH#{number}] Anfrage", body=body),
                  mail_from=OPERATOR, rcpt=[address])
    await quiet(daemon)


async def test_a_request_from_a_requester_who_is_not_authorised_is_refused_until_the_operator_overrides(
        tmp_path: Path) -> None:
    """``#primary`` on a normal user's ticket changes nothing and tells the operator why and how to override;
    ``#primary!`` carries it out, and the audit entry names the ticket, the requester and the override."""
    async with desk(tmp_path) as (daemon, sink):
        await _kunde(daemon)
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Ich bin jetzt Primärkontakt"))
        await mails_to(sink, 1, where=to(OPERATOR))
        await _answer(daemon, sink, "#primary azubi@kunde.example\nErledigt.")
        [refusal] = [item for item in sink.received if OPERATOR in item.rcpt_tos
                     and "Abgelehnt" in str(parsed(item)["Subject"])]
        text = " ".join(body_of(parsed(refusal)).split())
        # In the operator's language (German here), with the line that overrides.
        assert ("Der Absender des Tickets (azubi@kunde.example) ist kein weisungsberechtigter Kontakt von "
                "Kunde GmbH.") in text
        assert "schreiben Sie: #primary! azubi@kunde.example" in text
        assert not [item for item in sink.received if b"Erledigt." in item.raw and OPERATOR not in item.rcpt_tos]
        async with daemon.db.read() as store:
            organisation = await store.organisations.by_name(KUNDE)
            chef = await store.users.by_address("chef@kunde.example")
        assert organisation is not None and chef is not None and organisation.primary_contact_id == chef.id

        await _answer(daemon, sink, "#primary! azubi@kunde.example\nErledigt, telefonisch bestätigt.")
        async with daemon.db.read() as store:
            organisation = await store.organisations.by_name(KUNDE)
            azubi = await store.users.by_address("azubi@kunde.example")
            [entry] = [e for e in await store.audit.list(KUNDE) if e.action == "primary.set"]
        assert organisation is not None and azubi is not None and organisation.primary_contact_id == azubi.id
        assert entry.actor == OPERATOR
        assert entry.request == {"ticket": 10000, "tag": "[MH#10000]", "requester": "azubi@kunde.example",
                                 "requester_authorised": False, "override": True}


async def test_a_request_from_an_authorised_requester_is_carried_out_and_audited_with_its_ticket(
        tmp_path: Path) -> None:
    """``#adduser`` on an authorised contact's ticket is carried out; its audit entry names ticket and requester."""
    async with desk(tmp_path) as (daemon, sink):
        await _kunde(daemon)
        await deliver(daemon, make_mail("chef@kunde.example", subject="Neue Kollegin"))
        await mails_to(sink, 1, where=to(OPERATOR))
        await _answer(daemon, sink, "#adduser neu@kunde.example\nIst angelegt.")
        async with daemon.db.read() as store:
            [entry] = await store.audit.list("neu@kunde.example")
        assert (entry.action, entry.actor) == ("user.add", OPERATOR)
        assert entry.request == {"ticket": 10000, "tag": "[MH#10000]", "requester": "chef@kunde.example",
                                 "requester_authorised": True, "override": False}


# -- 3. an organisation without authorised contacts ---------------------------------------------------------


async def test_operators_are_told_at_once_when_the_last_authorised_contact_goes(tmp_path: Path) -> None:
    """Deauthorising the last authorised contact mails every operator what to do; deauthorising one of two
    mails nobody."""
    async with desk(tmp_path) as (daemon, sink):
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
            await admin.create_organisation(KUNDE, commercial="chef@kunde.example", technical="tech@kunde.example")
            await admin.deauthorise("tech@kunde.example")
            await admin.deauthorise("chef@kunde.example")
        await quiet(daemon)
        [told] = [item for item in sink.received if OPERATOR in item.rcpt_tos]
        assert str(parsed(told)["Subject"]) == "Kunde GmbH hat keinen weisungsberechtigten Kontakt mehr"
        text = body_of(parsed(told))
        assert "chef@kunde.example" in text and "ist nicht mehr weisungsberechtigt" in text
        assert "Handels- oder Vereinsregister" in text and "mailticketd user authorise ADRESSE --temporary" in text


async def test_a_new_ticket_of_an_organisation_without_authorised_contacts(tmp_path: Path) -> None:
    """The operator notice warns that nobody may give instructions, and the author's acknowledgement explains
    how to name someone: a register extract naming the managing director or chair."""
    async with desk(tmp_path) as (daemon, sink):
        await _kunde(daemon)
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
            await admin.deactivate("chef@kunde.example")
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Server langsam"))
        [notice] = await mails_to(sink, 1, where=lambda item: OPERATOR in item.rcpt_tos
                                  and "Neues Ticket" in str(parsed(item)["Subject"]))
        assert ("ACHTUNG: Kunde GmbH hat keinen weisungsberechtigten Kontakt."
                in body_of(parsed(notice)))
        [ack] = await mails_to(sink, 1, where=lambda item: "azubi@kunde.example" in item.rcpt_tos
                                and "Server langsam" in str(parsed(item)["Subject"]))
        text = " ".join(body_of(parsed(ack)).split())
        assert "Für Kunde GmbH ist bei uns derzeit niemand als weisungsberechtigt eingetragen" in text
        assert "Auszug aus dem Handelsregister oder Vereinsregister" in text
        assert "Geschäftsführer bzw. den Vorsitz namentlich nennt" in text


async def test_an_acknowledgement_of_a_represented_organisation_says_nothing_of_register_extracts(
        tmp_path: Path) -> None:
    """While the organisation has an authorised contact, neither the notice nor the acknowledgement warns."""
    async with desk(tmp_path) as (daemon, sink):
        await _kunde(daemon)
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Server langsam"))
        [ack] = await mails_to(sink, 1, where=lambda item: "azubi@kunde.example" in item.rcpt_tos
                                and "Server langsam" in str(parsed(item)["Subject"]))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "Registerauszug" not in body_of(parsed(notice)) and "Handelsregister" not in body_of(parsed(ack))


async def test_a_temporary_authorisation_is_mailed_to_its_holder_and_shown_to_staff(tmp_path: Path) -> None:
    """The person gets a mail saying until when and what for; ``org show`` and operator notices give the end."""
    async with desk(tmp_path) as (daemon, sink):
        await _kunde(daemon)
        until = date.today() + timedelta(days=20)
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test", now=utc_now())
            await admin.add_user("md@kunde.example", KUNDE, name="Maria Direktor")
            await admin.deactivate("chef@kunde.example")
            await admin.authorise_temporarily("md@kunde.example", until=until, note="HRB 4711")
        await quiet(daemon)
        [mail] = [item for item in sink.received if "md@kunde.example" in item.rcpt_tos
                  and "Vorläufige" in str(parsed(item)["Subject"])]
        german = until.strftime("%d.%m.%Y")
        assert str(parsed(mail)["Subject"]) == f"Vorläufige Weisungsberechtigung für Kunde GmbH bis {german}"
        text = " ".join(body_of(parsed(mail)).split())
        assert f"bis einschließlich {german}" in text and "neue weisungsberechtigte Kontakte benennen" in text
        assert "HRB 4711" not in text  # the staff's note stays with the staff
        async with daemon.db.read() as store:
            from mailticketd.views import organisation_view
            organisation = await store.organisations.by_name(KUNDE)
            assert organisation is not None
            view = await organisation_view(store, organisation, utc_now())
        assert view["temporary_authorisations"] == [{"address": "md@kunde.example", "until": until.isoformat()}]
        await deliver(daemon, make_mail("azubi@kunde.example", subject="Frage"))
        [notice] = await mails_to(sink, 1, where=lambda item: OPERATOR in item.rcpt_tos
                                  and "Neues Ticket" in str(parsed(item)["Subject"]))
        assert f"Vorläufig weisungsberechtigt: md@kunde.example bis {until.isoformat()}" in body_of(parsed(notice))


def test_org_show_flags_an_organisation_without_authorised_contacts_and_gives_the_end_date(tmp_path: Path) -> None:
    """``org show`` names the way out for an organisation without authorised contacts, and ``orgs`` flags it;
    a temporary authorisation shows with its last day."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "md@customer.example", "--org", ORG)
    ok(tmp_path, "user", "deactivate", CHEF)
    ok(tmp_path, "user", "deactivate", TECH)
    text = run(tmp_path, "org", "show", ORG).stdout
    assert "warning: no authorised contact" in text
    assert "ask for a commercial or association register extract naming the managing director or chair" in text
    assert "no-authorised-contact" in run(tmp_path, "orgs").stdout.splitlines()[1]
    ok(tmp_path, "user", "authorise", "md@customer.example", "--temporary", "--until", "2999-12-31",
       "--note", "HRB 4711")
    text = run(tmp_path, "org", "show", ORG).stdout
    assert "authorised contacts: md@customer.example (temporary, through 2999-12-31)" in text
    assert "no authorised contact" not in text
