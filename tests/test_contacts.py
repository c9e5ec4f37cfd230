"""Issue 10, contacts and standings: the primary contact, the monitoring contact's details, people who left,
and strangers who confirmed their address."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mailticketd.app import Daemon
from mailticketd.clock import utc_now
from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.views import organisation_view
from tests.helpdesk import COLLEAGUE, MANAGER, PASSWORD, browserless, people
from tests.helpers import make_mail
from tests.sink import Received, Sink
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_staff_cli import ORG, create_org, ok, run

KUNDE = "Kunde GmbH"
_LINK = re.compile(r"http://127\.0\.0\.1:8025/verify/[A-Za-z0-9_-]{43}")


def admin_of(daemon: Daemon, store: object) -> DirectoryAdmin:
    return DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="test",  # type: ignore[arg-type]
                          now=utc_now())


async def warnings(daemon: Daemon) -> list[str]:
    async with daemon.db.read() as store:
        organisation = await store.organisations.by_name(KUNDE)
        assert organisation is not None
        return (await organisation_view(store, organisation, utc_now()))["warnings"]  # type: ignore[no-any-return]


def subjects_to(sink: object, address: str) -> list[str]:
    return [str(parsed(item)["Subject"]) for item in sink.received if address in item.rcpt_tos]  # type: ignore


def link_path(text: str) -> str:
    found = _LINK.search(text)
    assert found, text
    return urlsplit(found.group(0)).path


# -- 4. the primary contact ---------------------------------------------------------------------------------


async def receptionist_gets_a_copy(daemon: Daemon, sink: Sink) -> Received:
    """Kunde GmbH with a receptionist as primary contact (a normal user) and two colleagues, Bob and Eve; Bob opens
    a ticket; returns the receptionist's copy of it."""
    async with daemon.db.transaction() as store:
        admin = admin_of(daemon, store)
        await admin.create_organisation(KUNDE, commercial="chef@kunde.example", technical="chef@kunde.example")
        for address in ("empfang@kunde.example", "bob@kunde.example", "eve@kunde.example"):
            await admin.add_user(address, KUNDE)
        await admin.set_primary_contact(KUNDE, "empfang@kunde.example")
    await deliver(daemon, make_mail("bob@kunde.example", subject="Drucker kaputt", body="Bitte helfen."))
    [copy] = await mails_to(sink, 1, where=lambda item: "empfang@kunde.example" in item.rcpt_tos
                            and "Drucker kaputt" in str(parsed(item)["Subject"]))
    return copy


async def test_the_primary_contact_gets_a_copy_of_new_tickets_whatever_their_role(tmp_path: Path) -> None:
    """A primary contact who is a normal user (no manager) still receives the copy of a colleague's new ticket."""
    async with desk(tmp_path) as (daemon, sink):
        copy = await receptionist_gets_a_copy(daemon, sink)
        text = body_of(parsed(copy))
        assert "als Primärkontakt Ihrer Organisation" in text and "Bitte helfen." in text


async def test_the_primary_contacts_reply_to_the_copy_joins_the_ticket(tmp_path: Path) -> None:
    """A primary contact who is a normal user answers the copy: the answer lands in the colleague's ticket (the
    copy's token proves the provider wrote to them about it), not in a new one, and a stranger's mail carrying
    that tag still does not."""
    async with desk(tmp_path) as (daemon, sink):
        copy = await receptionist_gets_a_copy(daemon, sink)
        reply_to = str(parsed(copy)["Reply-To"])
        subject = str(parsed(copy)["Subject"])
        await deliver(daemon, make_mail("empfang@kunde.example", to=reply_to, subject=f"AW: {subject}",
                                        body="Der Drucker steht im 2. Stock."), rcpt=[reply_to])
        await deliver(daemon, make_mail("eve@kunde.example", subject=f"AW: {subject}", body="Ich auch."))
        await quiet(daemon)
        async with daemon.db.read() as store:
            first = await store.tickets.by_number(10000)
            assert first is not None
            texts = [article.text for article in await store.articles.for_ticket(first.id)]
            tickets = await store.tickets.list()
        assert any("2. Stock" in text for text in texts), texts
        assert not any("Ich auch" in text for text in texts), texts
        assert len(tickets) == 2  # the colleague's and eve's own


async def test_org_show_warns_when_the_primary_contact_is_inactive_or_cannot_receive_mail(tmp_path: Path) -> None:
    """A primary contact whose last mail failed is warned about until a later mail reaches them; an inactive one
    (as older databases may hold) is warned about too."""
    async with desk(tmp_path) as (daemon, sink):
        async with daemon.db.transaction() as store:
            await admin_of(daemon, store).create_organisation(KUNDE, commercial="chef@kunde.example",
                                                              technical="tech@kunde.example")
        await quiet(daemon)
        assert await warnings(daemon) == ["no-monitoring-contact"]
        async with daemon.db.transaction() as store:
            await store.users.mark_delivery_failed("tech@kunde.example", "550 5.1.1 mailbox unknown")
        assert "primary-contact-undeliverable:tech@kunde.example" in await warnings(daemon)
        await deliver(daemon, make_mail("tech@kunde.example", subject="Wieder da"))
        await quiet(daemon)
        assert not [code for code in await warnings(daemon) if code.startswith("primary-contact")]
        async with daemon.db.transaction() as store:
            await store.conn.execute("UPDATE users SET status = 'inactive' WHERE address = 'tech@kunde.example'")
        assert "primary-contact-inactive:tech@kunde.example" in await warnings(daemon)


async def test_operators_are_told_when_the_primary_contact_leaves_and_nobody_authorised_remains(
        tmp_path: Path) -> None:
    """If nobody authorised is left to ask for a replacement primary contact, the operators are told instead."""
    async with desk(tmp_path) as (daemon, sink):
        async with daemon.db.transaction() as store:
            admin = admin_of(daemon, store)
            await admin.create_organisation(KUNDE, commercial="tech@kunde.example", technical="tech@kunde.example")
            await admin.deauthorise("tech@kunde.example")  # the last authorised contact: operators told
        await quiet(daemon)
        before = len(subjects_to(sink, OPERATOR))
        async with daemon.db.transaction() as store:
            _, asked = await admin_of(daemon, store).deactivate("tech@kunde.example")
        assert asked == []
        await quiet(daemon)
        [told] = [item for item in sink.received if OPERATOR in item.rcpt_tos][before:]
        text = body_of(parsed(told))
        assert "tech@kunde.example <tech@kunde.example> hat Kunde GmbH verlassen." in text
        assert "Die Person war Primärkontakt; um einen Ersatz konnte niemand gebeten werden." in text


# -- 5. the monitoring contact's details --------------------------------------------------------------------


def test_monitoring_contact_with_name_and_phone_by_cli(tmp_path: Path) -> None:
    """``monitoring set --name --phone`` stores the contact details; ``org show`` gives them; a bad phone number
    is refused by name."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "mon@customer.example", "--org", ORG)
    user = ok(tmp_path, "monitoring", "set", "mon@customer.example", "--name", "Moni Tor", "--phone", "+49 30 1234-5")
    assert (user["monitoring_contact"], user["name"], user["phone"]) == (True, "Moni Tor", "+49 30 1234-5")
    view = ok(tmp_path, "org", "show", ORG)
    assert view["monitoring_details"] == [{"address": "mon@customer.example", "name": "Moni Tor",
                                           "phone": "+49 30 1234-5"}]
    assert "monitoring contacts: mon@customer.example (Moni Tor, phone +49 30 1234-5)" in run(
        tmp_path, "org", "show", ORG).stdout
    bad = run(tmp_path, "monitoring", "set", "mon@customer.example", "--phone", "call me")
    assert bad.returncode == 1 and "'call me' is not a phone number" in bad.stderr


async def test_monitoring_contact_named_on_the_web_is_stored_with_phone_and_shown_to_managers(
        tmp_path: Path) -> None:
    """The web request names name, address and phone; the command line it states stores all three; the
    organisation page then shows the phone number to managers."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with browserless(daemon, address=MANAGER) as manager:
            status, _, _ = await manager.post("/organisation/requests/contact",
                                              {"role": "monitoring", "name": "Moni Tor", "address": "mon@kunde.example",
                                               "phone": "+49 30 98765"}, form_page="/organisation")
            assert status == 200
            [notice] = await mails_to(sink, 1, where=to(OPERATOR))
            lines = body_of(parsed(notice)).splitlines()
            assert "#monitoring mon@kunde.example +49 30 98765 Moni Tor" in lines
            reply_to = str(parsed(notice)["Reply-To"])
            await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: Auftrag",
                                            body="#adduser mon@kunde.example\n"
                                                 "#monitoring mon@kunde.example +49 30 98765 Moni Tor\nErledigt."),
                          mail_from=OPERATOR, rcpt=[reply_to])
            await quiet(daemon)
            async with daemon.db.read() as store:
                user = await store.users.by_address("mon@kunde.example")
            assert user is not None
            assert (user.monitoring_contact, user.name, user.phone) == (True, "Moni Tor", "+49 30 98765")
            page = (await manager.get("/organisation"))[1]
            assert "ja, Telefon +49 30 98765" in page and "Moni Tor" in page


# -- 6. people who left -------------------------------------------------------------------------------------


async def test_a_mail_from_someone_who_left_shows_staff_their_former_organisation(tmp_path: Path) -> None:
    """Operators read which organisation the inactive author belonged to; the author gets the neutral answer,
    which names no organisation."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with daemon.db.transaction() as store:
            await admin_of(daemon, store).deactivate(COLLEAGUE)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Noch eine Frage"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        lines = body_of(parsed(notice)).splitlines()
        assert f"Von: {COLLEAGUE} (INAKTIVER Benutzer)" in lines
        assert "Früher bei: Kunde GmbH (hat die Organisation verlassen)" in lines
        [answer] = await mails_to(sink, 1, where=to(COLLEAGUE))
        text = body_of(parsed(answer))
        assert "nicht freigeschaltet" in text and KUNDE not in text and "inaktiv" not in text.lower()


async def test_every_link_of_someone_who_left_stops_working_when_they_are_deactivated(tmp_path: Path) -> None:
    """The welcome link and a password link mailed before the deactivation answer 410 afterwards, set no
    password, and asking for a fresh link through them sends nothing."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with daemon.db.transaction() as store:
            await admin_of(daemon, store).add_user("neu@kunde.example", KUNDE)
        async with browserless(daemon) as visitor:
            await visitor.post("/password", {"address": COLLEAGUE}, form_page="/password")
        await quiet(daemon)
        [welcome] = await mails_to(sink, 1, where=to("neu@kunde.example"))
        [password] = await mails_to(sink, 1, where=to(COLLEAGUE))
        links = [link_path(body_of(parsed(welcome))), link_path(body_of(parsed(password)))]
        async with browserless(daemon) as visitor:
            assert [(await visitor.get(link))[0] for link in links] == [200, 200]  # working before
        async with daemon.db.transaction() as store:
            for address in ("neu@kunde.example", COLLEAGUE):
                await admin_of(daemon, store).deactivate(address)
        sent = len(sink.received)
        async with browserless(daemon) as visitor:
            for link in links:
                assert (await visitor.get(link))[0] == 410
                status, _, _ = await visitor.post(link, {"password": "Ein neues Passwort 1",
                                                         "password_repeat": "Ein neues Passwort 1"}, form_page=link)
                assert status == 410
                status, _, _ = await visitor.post(f"{link}/renew", {}, form_page=link)
                assert status == 410
            status, page = await visitor.log_in(COLLEAGUE, PASSWORD)
            assert "Abmelden" not in page
        await quiet(daemon)
        assert len(sink.received) == sent
        async with daemon.db.read() as store:
            user = await store.users.by_address("neu@kunde.example")
            assert user is not None and user.verified_at is None


# -- 7. strangers and the verification link -----------------------------------------------------------------


@pytest.mark.sqlite_only  # the staff CLI runs as a process on the config file
async def test_a_stranger_who_confirms_the_address_is_confirmed_without_organisation_everywhere(
        tmp_path: Path) -> None:
    """A stranger proves the address through the acknowledgement's link, then sees only their own ticket on the
    web; operator notices and the CLI ``users`` both call them "address confirmed, no organisation"."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Intern"))
        await deliver(daemon, make_mail("eve@frei.example", subject="Angebot"))
        [first] = await mails_to(sink, 1, where=lambda item: OPERATOR in item.rcpt_tos
                                 and "Angebot" in str(parsed(item)["Subject"]))
        assert "Von: eve@frei.example (UNGEPRÜFTE Adresse)" in body_of(parsed(first)).splitlines()
        [ack] = await mails_to(sink, 1, where=to("eve@frei.example"))
        link = link_path(body_of(parsed(ack)))
        async with browserless(daemon) as eve:
            status, page, _ = await eve.post(link, {"password": PASSWORD, "password_repeat": PASSWORD},
                                             form_page=link)
            assert status == 200
            assert (await eve.log_in("eve@frei.example"))[0] == 200
            page = (await eve.get("/tickets"))[1]
            assert re.findall(r'href="/tickets/(\d+)">\[', page) == ["10001"]
            assert (await eve.get("/tickets/10000"))[0] == 404
        await deliver(daemon, make_mail("eve@frei.example", subject="Noch ein Angebot"))
        [second] = await mails_to(sink, 1, where=lambda item: OPERATOR in item.rcpt_tos
                                  and "Noch ein Angebot" in str(parsed(item)["Subject"]))
        assert "Von: eve@frei.example (Adresse bestätigt, keine Organisation)" in body_of(parsed(second)).splitlines()
        await quiet(daemon)
    users = {user["address"]: user for user in ok(tmp_path, "users")}
    assert (users["eve@frei.example"]["standing"], users["eve@frei.example"]["organisation"]) == ("confirmed", None)
    assert users[MANAGER]["standing"] == "authorised" and users[COLLEAGUE]["standing"] == "user"
    [line] = [line for line in run(tmp_path, "users").stdout.splitlines() if line.startswith("eve@frei.example")]
    assert line.endswith("address confirmed, no organisation")
