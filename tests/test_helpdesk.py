"""The customer helpdesk over HTTP: who sees which ticket, answering and opening tickets, the organisation page."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from mailticketd.app import Daemon
from tests.helpdesk import COLLEAGUE, MANAGER, OTHER, STRANGER, browserless, csrf_in, people
from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to


async def ticket_numbers(page: str) -> list[int]:
    return [int(number) for number in re.findall(r'href="/tickets/(\d+)">\[', page)]


async def open_tickets(daemon: Daemon) -> None:
    """10000 by the colleague, 10001 by the manager, 10002 by the other organisation, 10003 by the stranger."""
    await deliver(daemon, make_mail(COLLEAGUE, subject="Backup von de-fr-srv-0815 fehlt",
                                    body="Seit gestern läuft das Backup von de-fr-srv-0815 nicht."))
    await deliver(daemon, make_mail(MANAGER, subject="Firewall öffnen", body="Bitte Port 443 öffnen."))
    await deliver(daemon, make_mail(OTHER, subject="Geheimes Projekt", body="Vertraulich: Projekt Nordlicht."))
    await deliver(daemon, make_mail(STRANGER, subject="Anfrage Angebot", body="Was kostet ein Server?"))


# -- who sees what --------------------------------------------------------------------------------------------------


async def test_manager_sees_the_organisations_tickets_and_a_colleague_only_their_own(tmp_path: Path) -> None:
    """A manager's list holds every ticket of the organisation; a colleague's only their own; nobody sees others'."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await open_tickets(daemon)
        async with browserless(daemon, address=MANAGER) as manager:
            status, page = await manager.get("/tickets")
            assert status == 200 and await ticket_numbers(page) == [10001, 10000]
            assert "Tickets von Kunde GmbH" in page and "de-fr-srv-0815" in page
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            status, page = await colleague.get("/tickets")
            assert await ticket_numbers(page) == [10000]
            assert (await colleague.get("/tickets/10001"))[0] == 404
        async with browserless(daemon, address=STRANGER) as stranger:
            assert await ticket_numbers((await stranger.get("/tickets"))[1]) == [10003]
            assert (await stranger.get("/tickets/10000"))[0] == 404


async def test_foreign_and_missing_tickets_answer_the_same_404(tmp_path: Path) -> None:
    """Another organisation's ticket, its files and a ticket that does not exist all answer 404 with one page."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(OTHER, subject="Vertrag", attachments=[("vertrag.pdf", "application/pdf",
                                                                                   b"%PDF-geheim")]))
        async with browserless(daemon, address=MANAGER) as manager:
            foreign_status, foreign = await manager.get("/tickets/10000")
            missing_status, missing = await manager.get("/tickets/99999")
            file_status, file_page = await manager.get("/tickets/10000/files/1/vertrag.pdf")
        assert foreign_status == missing_status == file_status == 404
        assert foreign == missing and "geheim" not in file_page and "Vertrag" not in foreign


async def test_a_manager_reads_a_colleagues_ticket_without_internal_notes(tmp_path: Path) -> None:
    """The ticket page shows customer mails and operator replies; notes, flags, standings and operators' addresses
    never."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Backup fehlt", body="Bitte prüfen.",
                                        cc="neu@woanders.example"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        reply_to = str(parsed(notice)["Reply-To"])
        for body in ("#note\nIntern: Kunde zahlt nicht, VORSICHT", "Wir haben das Backup neu gestartet."):
            await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: [MH#10000] Backup fehlt",
                                            body=f"{body}\n\n-----Ursprüngliche Nachricht-----\nInterne Notiz"),
                          mail_from=OPERATOR, rcpt=[reply_to])
        await quiet(daemon)
        async with browserless(daemon, address=MANAGER) as manager:
            status, page = await manager.get("/tickets/10000")
        assert status == 200
        assert "Bitte prüfen." in page and "Wir haben das Backup neu gestartet." in page
        assert "VORSICHT" not in page and "Interne Notiz" not in page
        assert OPERATOR not in page and "op@" not in page
        assert "<strong>Support</strong>" in page and "Bob Kollege" in page
        for word in ("ungeprüft", "unverified", "inaktiv", "inactive", "weisungsberechtigt", "no-auto-reply"):
            assert word not in page.lower()
        assert "neu@woanders.example" in page  # the CC takes part and is listed


async def test_a_reply_of_commands_alone_shows_nothing_of_the_notice(tmp_path: Path) -> None:
    """An operator who answers only '#close' above the quoted notice: the customer's page shows none of the notice
    (standing, other organisations' VMs, commands)."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Prüfen", body="Bitte de-be-srv-4711 prüfen."))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        reply_to = str(parsed(notice)["Reply-To"])
        quoted = "\n".join(f"> {line}" for line in body_of(parsed(notice)).splitlines())
        await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: [MH#10000] Prüfen",
                                        body=f"#close\n\n{quoted}"), mail_from=OPERATOR, rcpt=[reply_to])
        await quiet(daemon)
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            page = (await colleague.get("/tickets/10000"))[1]
        assert "geschlossen" in page and "Bitte de-be-srv-4711 prüfen." in page
        for leak in ("Andere AG", "#close", "Weisung", "Absender:", "other-organisation", "#adduser"):
            assert leak not in page, leak


async def test_quoted_history_is_folded_away(tmp_path: Path) -> None:
    """A customer's quoted history is behind an expandable <details>, the new text in front."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        body = "Danke, geht wieder.\n\nAm 01.12.2026 um 10:00 schrieb Support:\n> Bitte neu starten."
        await deliver(daemon, make_mail(COLLEAGUE, subject="Server", body=body))
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            page = (await colleague.get("/tickets/10000"))[1]
        visible, _, folded = page.partition("<details>")
        assert "Danke, geht wieder." in visible and "Bitte neu starten." not in visible
        assert "&gt; Bitte neu starten." in folded


async def test_attachments_download_only_for_those_who_may_see_the_ticket(tmp_path: Path) -> None:
    """A file comes as a download with its type; another organisation gets 404 for the same URL."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Log", attachments=[
            ("fehler log.txt", "text/plain", b"Fehler 42"), ("bild.html", "text/html", b"<script>alert(1)</script>")]))
        async with browserless(daemon, address=MANAGER) as manager:
            page = (await manager.get("/tickets/10000"))[1]
            links = re.findall(r'href="(/tickets/10000/files/[^"]+)"', page)
            assert len(links) == 2
            async with manager.session.get(links[0]) as response:
                assert response.status == 200 and await response.read() == b"Fehler 42"
                assert response.headers["Content-Type"].startswith("text/plain")
                assert response.headers["Content-Disposition"].startswith("attachment;")
                assert "fehler%20log.txt" in response.headers["Content-Disposition"]
            async with manager.session.get(links[1]) as response:
                assert response.headers["Content-Disposition"].startswith("attachment;")
                assert "sandbox" in response.headers["Content-Security-Policy"]
        async with browserless(daemon, address=OTHER) as other:
            assert (await other.get(links[0]))[0] == 404


async def test_list_filters_searches_and_pages(tmp_path: Path) -> None:
    """Status filter in words, search by tag or subject words, 50 tickets a page, newest activity first."""
    async with desk(tmp_path) as (daemon, sink):
        found = await people(daemon)
        async with daemon.db.transaction() as store:
            manager = await store.users.by_address(MANAGER)
            assert manager is not None
            for index in range(55):
                ticket = await store.tickets.create(first_number=10000, subject=f"Anfrage Nummer {index}",
                                                    organisation_id=found.organisation_id, requester_id=manager.id)
                await store.tickets.add_participants(ticket.id, [(manager.id, "requester")])
            await store.tickets.set_status((await store.tickets.by_number(10003)).id, "pending")  # type: ignore[union-attr]
            await store.tickets.set_status((await store.tickets.by_number(10004)).id, "closed")  # type: ignore[union-attr]
        async with browserless(daemon, address=MANAGER) as client:
            first = (await client.get("/tickets"))[1]
            assert len(await ticket_numbers(first)) == 50 and "Seite 1" in first and "page=2" in first
            assert (await ticket_numbers(first))[:2] == [10004, 10003]  # changed last
            second = (await client.get("/tickets?page=2"))[1]
            assert len(await ticket_numbers(second)) == 5 and "page=1" in second and "page=3" not in second
            waiting = (await client.get("/tickets?status=waiting"))[1]
            assert await ticket_numbers(waiting) == [10003] and "wartet auf Sie" in waiting
            assert await ticket_numbers((await client.get("/tickets?status=closed"))[1]) == [10004]
            assert await ticket_numbers((await client.get("/tickets?q=%5BMH%2310042%5D"))[1]) == [10042]
            assert await ticket_numbers((await client.get("/tickets?q=nummer+17"))[1]) == [10017]
            assert "Keine Tickets gefunden" in (await client.get("/tickets?q=nichts+da"))[1]


# -- writing --------------------------------------------------------------------------------------------------------


async def test_web_answer_goes_through_the_pipeline_like_a_mail(tmp_path: Path) -> None:
    """An answer with a file becomes an article by its author; operators are told, with the file and 'web'."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Backup fehlt"))
        await mails_to(sink, 1, where=to(OPERATOR))
        async with browserless(daemon, address=MANAGER) as manager:
            form = aiohttp.FormData()
            form.add_field("csrf", csrf_in((await manager.get("/tickets/10000"))[1]))
            form.add_field("text", "Hier das Protokoll von de-fr-srv-0816.")
            form.add_field("files", b"log line", filename="backup.log", content_type="text/plain")
            status, page, response = await manager.post("/tickets/10000/answer", form)
            assert status == 200 and str(response.url).endswith("/tickets/10000?sent=1")
            assert "Ihre Antwort ist angekommen" in page and "Hier das Protokoll" in page and "backup.log" in page
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        text = body_of(parsed(notices[-1]))
        assert "Antwort des Kunden" in text and "Hier das Protokoll von de-fr-srv-0816." in text
        assert "Web-Helpdesk" in text and "Anhang: backup.log" in text and MANAGER in text
        assert "VM: de-fr-srv-0816 (Kunde GmbH)" in text


async def test_web_answer_reopens_a_closed_ticket(tmp_path: Path) -> None:
    """Answering a recently closed ticket reopens it, as a mail would."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Backup fehlt"))
        async with daemon.db.transaction() as store:
            await store.tickets.set_status((await store.tickets.by_number(10000)).id, "closed")  # type: ignore[union-attr]
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            page = (await colleague.get("/tickets/10000"))[1]
            assert "Mit Ihrer Antwort öffnen Sie es wieder" in page
            await colleague.post("/tickets/10000/answer", {"text": "Doch noch nicht gut."}, form_page="/tickets/10000")
            assert "offen" in (await colleague.get("/tickets/10000"))[1]
        async with daemon.db.read() as store:
            assert (await store.tickets.by_number(10000)).status == "open"  # type: ignore[union-attr]


async def test_new_ticket_asks_for_a_meaningful_subject_and_links_the_ticked_vms(tmp_path: Path) -> None:
    """"Hilfe" alone is refused with a hint; a real subject opens a ticket with both VMs and an acknowledgement."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            form_page = (await colleague.get("/tickets/new"))[1]
            assert "de-fr-srv-0815" in form_page and "de-be-srv-4711" not in form_page
            assert "getrennte Tickets" in form_page
            data = {"subject": "Hilfe!", "text": "Geht nicht.", "vm": "de-fr-srv-0815"}
            status, page, _ = await colleague.post("/tickets/new", data, form_page="/tickets/new")
            assert status == 400 and "aussagekräftigen Betreff" in page and "Geht nicht." in page
            form = aiohttp.FormData()
            form.add_field("csrf", csrf_in(form_page))
            form.add_field("subject", "Beide Webserver antworten langsam")
            for name in ("de-fr-srv-0815", "de-fr-srv-0816", "de-be-srv-4711"):
                form.add_field("vm", name)
            form.add_field("text", "Seit 10 Uhr dauern Anfragen 5 Sekunden.")
            status, page, response = await colleague.post("/tickets/new", form)
            assert status == 200 and str(response.url).endswith("/tickets/10000?created=1")
            assert "de-fr-srv-0815, de-fr-srv-0816" in page and "de-be-srv-4711" not in page
        [ack] = await mails_to(sink, 1, where=to(COLLEAGUE))
        assert "[MH#10000]" in str(parsed(ack)["Subject"]) and "/login" in body_of(parsed(ack))


async def test_upload_limits_answer_with_a_clear_message(tmp_path: Path) -> None:
    """Too many files or too many bytes: 413 with what is allowed, the text kept, nothing stored."""
    async with desk(tmp_path, smtp={"max_message_size": 200_000}, http={"max_attachments": 2}) as (daemon, sink):
        await people(daemon)
        await deliver(daemon, make_mail(COLLEAGUE, subject="Backup fehlt"))
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            token = csrf_in((await colleague.get("/tickets/10000"))[1])
            for files, message in (([b"a", b"b", b"c"], "Erlaubt sind 2 Dateien"),
                                   ([b"x" * 300_000], "zusammen zu groß")):
                form = aiohttp.FormData()
                form.add_field("csrf", token)
                form.add_field("text", "Mein Text bleibt.")
                for index, content in enumerate(files):
                    form.add_field("files", content, filename=f"f{index}.bin")
                status, page, _ = await colleague.post("/tickets/10000/answer", form)
                assert status == 413 and message in page and "Mein Text bleibt." in page
        async with daemon.db.read() as store:
            assert len(await store.articles.for_ticket(1)) == 1


# -- the organisation -----------------------------------------------------------------------------------------------


async def test_organisation_page_lists_people_for_managers_only(tmp_path: Path) -> None:
    """Managers see the people with roles and contacts, never the ones who left; a colleague gets 404."""
    async with desk(tmp_path) as (daemon, sink):
        found = await people(daemon)
        async with daemon.db.transaction() as store:
            await store.users.create("weg@kunde.example", organisation_id=found.organisation_id, status="inactive")
        async with browserless(daemon, address=MANAGER) as manager:
            status, page = await manager.get("/organisation")
        assert status == 200 and "Bob Kollege" in page and "Anna Admin" in page
        assert "weg@kunde.example" not in page and "inaktiv" not in page.lower()
        assert "Neues Konto beantragen" in page and "Ausscheiden einer Person melden" in page
        async with browserless(daemon, address=COLLEAGUE) as colleague:
            assert (await colleague.get("/organisation"))[0] == 404


async def test_a_manager_role_without_authorisation_counts_for_nothing(tmp_path: Path) -> None:
    """The manager role goes with the authorisation: a stored role without it shows no organisation page and
    files no request, not even a forged one."""
    async with desk(tmp_path) as (daemon, sink):
        found = await people(daemon)
        from tests.helpdesk import add_person
        await add_person(daemon, "chef@kunde.example", organisation_id=found.organisation_id, role="manager")
        async with browserless(daemon, address="chef@kunde.example") as chef:
            assert (await chef.get("/organisation"))[0] == 404
            status, page, _ = await chef.post("/organisation/requests/left", {"who": COLLEAGUE},
                                              form_page="/tickets")
            assert status == 404
        async with daemon.db.read() as store:
            assert await store.tickets.list() == []


async def test_leaving_request_is_carried_out_with_the_command_line_it_states(tmp_path: Path) -> None:
    """The request ticket names '#left <address>'; the operator's reply with that line deactivates the person."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with browserless(daemon, address=COLLEAGUE) as colleague_session:
            async with browserless(daemon, address=MANAGER) as manager:
                status, page, response = await manager.post(
                    "/organisation/requests/left", {"who": COLLEAGUE, "note": "Seit 1.12. nicht mehr bei uns."},
                    form_page="/organisation")
                assert status == 200 and str(response.url).endswith("/tickets/10000?request=1")
            [notice] = await mails_to(sink, 1, where=to(OPERATOR))
            text = body_of(parsed(notice))
            assert f"#left {COLLEAGUE}" in text.splitlines() and "weisungsberechtigt" in text
            reply_to = str(parsed(notice)["Reply-To"])
            await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: Meldung",
                                            body=f"#left {COLLEAGUE}\nErledigt, das Konto ist gesperrt."),
                          mail_from=OPERATOR, rcpt=[reply_to])
            await quiet(daemon)
            async with daemon.db.read() as store:
                assert (await store.users.by_address(COLLEAGUE)).status == "inactive"  # type: ignore[union-attr]
            status, _ = await colleague_session.get("/tickets")
            assert status == 200 and "Im Helpdesk anmelden" in _  # sent to the log-in: the session ended


async def test_account_request_states_adduser_and_authorise(tmp_path: Path) -> None:
    """A new-account request for an authorised person names both command lines; bad input gets a clear hint."""
    async with desk(tmp_path) as (daemon, sink):
        await people(daemon)
        async with browserless(daemon, address=MANAGER) as manager:
            status, page, _ = await manager.post("/organisation/requests/account",
                                                 {"name": "Eva", "address": "keine-adresse"}, form_page="/organisation")
            assert status == 400 and "gültige E-Mail-Adresse" in page and 'value="Eva"' in page
            await manager.post("/organisation/requests/account",
                               {"name": "Eva Neu", "address": "eva@kunde.example", "phone": "+49 30 123",
                                "authorise": "yes"}, form_page="/organisation")
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        lines = body_of(parsed(notice)).splitlines()
        assert "#adduser eva@kunde.example" in lines and "#authorise eva@kunde.example" in lines
        assert "Telefon: +49 30 123" in lines
