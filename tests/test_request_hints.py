"""The helpdesk's hints (DESIGN §1, issue rules): meaningful subjects, VM names, one topic per ticket, #split,
what operators read about the recipients, commands under the answer, and the provider's name in footers."""

from __future__ import annotations

from pathlib import Path

from mailticketd.app import Daemon
from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to

MANAGER = "chef@kunde.example"
MEMBER = "azubi@kunde.example"


async def organisation(daemon: Daemon) -> None:
    """Kunde GmbH with two VMs, a manager and a member; Andere AG with one VM."""
    async with daemon.db.transaction() as store:
        kunde = await store.organisations.create("Kunde GmbH")
        andere = await store.organisations.create("Andere AG")
        await store.vms.add("de-fr-srv-0815", kunde.id)
        await store.vms.add("de-fr-srv-0816", kunde.id)
        await store.vms.add("de-be-srv-4711", andere.id)
        await store.users.create(MANAGER, organisation_id=kunde.id, status="active", role="manager",
                                 authorised=True, name="Chefin")
        await store.users.create(MEMBER, organisation_id=kunde.id, status="active")


async def test_generic_subject_gets_a_polite_hint_and_operators_see_it(tmp_path: Path) -> None:
    """'Dringend: Hilfe!' is acknowledged with a request for a meaningful subject; operators read it in words."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="Dringend: Hilfe!", body="de-fr-srv-0815 ist weg."))
        [ack] = await mails_to(sink, 1, where=to(MEMBER))
        text = body_of(parsed(ack))
        assert "„Dringend: Hilfe!“ sagt uns noch nicht, worum es geht" in text
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "Hinweis: Der Betreff sagt nichts über das Anliegen" in body_of(parsed(notice))
        await deliver(daemon, make_mail(MEMBER, subject="Backup von de-fr-srv-0815 schlägt fehl"))
        acks = await mails_to(sink, 2, where=to(MEMBER))
        assert "sagt uns noch nicht" not in body_of(parsed(acks[1]))


async def test_a_mail_without_subject_never_reads_no_subject_in_english(tmp_path: Path) -> None:
    """A German customer's mail without subject: the acknowledgement says so in German, never '(no subject)'."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="", body="de-fr-srv-0815 antwortet nicht."))
        [ack] = await mails_to(sink, 1, where=to(MEMBER))
        text = body_of(parsed(ack))
        assert "Ihre Nachricht hatte keinen Betreff." in text and "no subject" not in text.lower()
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "„(ohne Betreff)“" in body_of(parsed(notice))


async def test_no_vm_named_gets_the_scheme_and_managers_their_vm_names(tmp_path: Path) -> None:
    """A member learns the naming scheme only; a manager also the organisation's VMs; operators see the flag."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="Webseite langsam", body="Seit heute früh."))
        await deliver(daemon, make_mail(MANAGER, subject="Webseite langsam", body="Seit heute früh."))
        [member_ack] = await mails_to(sink, 1, where=to(MEMBER))
        [manager_ack] = await mails_to(sink, 1, where=to(MANAGER))
        member_text, manager_text = body_of(parsed(member_ack)), body_of(parsed(manager_ack))
        assert "Sie haben keine VM genannt" in member_text and "de-XX-srv-XXXX" in member_text
        assert "de-fr-srv-0815" not in member_text
        assert "eingetragen: de-fr-srv-0815, de-fr-srv-0816" in manager_text
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        assert all("Keine VM genannt" in body_of(parsed(notice)) for notice in notices)


async def test_two_organisations_vms_ask_for_separate_tickets_and_split_makes_one(tmp_path: Path) -> None:
    """VMs of two organisations get the one-topic hint; '#split Subject' copies the mail into a new ticket for the
    same people, both tickets name each other, and the customer learns the new tag."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        body = "1. de-fr-srv-0815 braucht mehr RAM.\n2. de-be-srv-4711 hat kein Backup."
        await deliver(daemon, make_mail(MANAGER, subject="Zwei Dinge", body=body, cc="kollege@kunde.example"))
        [ack] = await mails_to(sink, 1, where=to(MANAGER))
        assert "mehrere Anliegen" in body_of(parsed(ack))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "#split" in body_of(parsed(notice)) and "mehrere Themen" in body_of(parsed(notice))
        reply_to = str(parsed(notice)["Reply-To"])
        await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: [MH#10000] Zwei Dinge",
                                        body="Den RAM erweitern wir heute.\n#split Backup de-be-srv-4711"),
                      mail_from=OPERATOR, rcpt=[reply_to])
        await quiet(daemon)
        async with daemon.db.read() as store:
            old, new = await store.tickets.by_number(10000), await store.tickets.by_number(10001)
            assert old is not None and new is not None and new.subject == "Backup de-be-srv-4711"
            assert await store.tickets.participant_ids(new.id) == await store.tickets.participant_ids(old.id)
            copied = await store.articles.for_ticket(new.id)
            assert copied[0].text.startswith("1. de-fr-srv-0815") and "split-from:10000" in copied[0].flags
            assert any("split-into:10001" in article.flags for article in await store.articles.for_ticket(old.id))
        for customer in (MANAGER, "kollege@kunde.example"):
            split = [item for item in await mails_to(sink, 1, where=to(customer))
                     if "[MH#10001]" in str(parsed(item)["Subject"])]
            assert split and "eigenen Ticket" in body_of(parsed(split[0]))
        answers = [body_of(parsed(item)) for item in sink.received if MANAGER in item.rcpt_tos]
        assert any("Den RAM erweitern wir heute." in text and "#split" not in text for text in answers)


async def test_notice_lists_everyone_who_will_read_the_answer(tmp_path: Path) -> None:
    """The operator sees each recipient of an answer with their standing, an unverified stranger included."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MANAGER, subject="Firewall öffnen de-fr-srv-0815",
                                        cc="berater@fremd.example"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        lines = body_of(parsed(notice)).splitlines()
        start = lines.index("Ihre Antwort geht an:")
        assert sorted(lines[start + 1:start + 3]) == ["  Chefin <chef@kunde.example> (weisungsberechtigt)",
                                                      "  berater@fremd.example (UNGEPRÜFTE Adresse)"]


async def test_close_under_the_answer_closes_and_is_not_sent(tmp_path: Path) -> None:
    """An operator who writes '#close' under the answer closes the ticket; the customer reads the answer only."""
    async with desk(tmp_path) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="Backup von de-fr-srv-0815"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        reply_to = str(parsed(notice)["Reply-To"])
        await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="AW: [MH#10000] Backup",
                                        body="Das Backup läuft wieder.\n\nViele Grüße\n#close"),
                      mail_from=OPERATOR, rcpt=[reply_to])
        await quiet(daemon)
        async with daemon.db.read() as store:
            assert (await store.tickets.by_number(10000)).status == "closed"  # type: ignore[union-attr]
        texts = [body_of(parsed(item)) for item in sink.received if MEMBER in item.rcpt_tos]
        assert any("Das Backup läuft wieder." in text for text in texts)
        assert not any("#close" in text for text in texts)


async def test_every_footer_names_the_provider(tmp_path: Path) -> None:
    """With [mail] organisation_name set, the acknowledgement is signed with it."""
    async with desk(tmp_path, mail={"organisation_name": "Example Hosting GmbH"}) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="Backup von de-fr-srv-0815"))
        [ack] = await mails_to(sink, 1, where=to(MEMBER))
        assert body_of(parsed(ack)).replace("\r\n", "\n").rstrip().endswith("-- \nIhr Support-Team\nExample Hosting GmbH")


async def test_refusals_speak_the_operators_language(tmp_path: Path) -> None:
    """A refused request is explained in the desk's language (English here), with the line that overrides it."""
    async with desk(tmp_path, mail={"default_language": "en"}) as (daemon, sink):
        await organisation(daemon)
        await deliver(daemon, make_mail(MEMBER, subject="Our colleague left (de-fr-srv-0815)"))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        reply_to = str(parsed(notice)["Reply-To"])
        await deliver(daemon, make_mail(OPERATOR, to=reply_to, subject="Re: [MH#10000] Our colleague left",
                                        body=f"#left {MANAGER}\nDone."), mail_from=OPERATOR, rcpt=[reply_to])
        await quiet(daemon)
        [refusal] = [item for item in sink.received if OPERATOR in item.rcpt_tos
                     and "Refused" in str(parsed(item)["Subject"])]
        text = " ".join(body_of(parsed(refusal)).split())
        assert f"The ticket's requester ({MEMBER}) is not an authorised contact of Kunde GmbH." in text
        assert f"write: #left! {MANAGER}" in text
