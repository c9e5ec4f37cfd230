"""Real-world mail through the whole daemon: auto-replies known by subject, empty attachments, Outlook quotes."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_operator_mail import CUSTOMER, customer_mails
from tests.test_threading import ticket, tickets

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mail"
ANNA = "anna@customer.example"
assert ANNA == CUSTOMER


async def test_auto_reply_known_only_by_subject_is_stored_shown_and_never_answered(tmp_path: Path) -> None:
    """An out-of-office mail without any auto-reply header is kept on the ticket as an auto-reply, like one with
    ``Auto-Submitted``: operators see it in the ticket, nobody gets a mail about it."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, (FIXTURES / "auto-reply-by-subject-only.eml").read_bytes(), mail_from=ANNA)
        await quiet(daemon)
        [only] = await tickets(daemon)
        article = (await ticket(daemon, only["number"]))["articles"][0]
        assert article["kind"] == "auto-reply"
        assert "no-auto-reply:auto-reply-subject" in article["flags"]
        assert "nicht im Büro" in article["visible_text"]
        assert sink.received == []


async def test_auto_reply_by_subject_on_a_ticket_is_not_answered(tmp_path: Path) -> None:
    """An "Automatic reply:" to our acknowledgement joins the ticket without another acknowledgement."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(ANNA, subject="Server down"))
        [ack] = await mails_to(sink, 1, where=to(ANNA))
        subject = str(parsed(ack)["Subject"])
        await deliver(daemon, make_mail(ANNA, subject=f"Automatic reply: {subject}", body="I am away."))
        await quiet(daemon)
        [only] = await tickets(daemon)
        assert [a["kind"] for a in (await ticket(daemon, only["number"]))["articles"]] == ["mail", "auto-reply"]
        assert len([item for item in sink.received if ANNA in item.rcpt_tos]) == 1


async def test_empty_attachments_are_dropped_with_a_note(tmp_path: Path) -> None:
    """Zero-length attachments are not stored; the article and the operators' notice say one was dropped."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, (FIXTURES / "zero-length-attachment.eml").read_bytes(), mail_from=ANNA)
        [only] = await tickets(daemon)
        article = (await ticket(daemon, only["number"]))["articles"][0]
        assert [item["name"] for item in article["attachments"]] == ["voll.log"]
        assert {"empty-attachment-dropped:leer.log", "empty-attachment-dropped:leer.pdf"} <= set(article["flags"])
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        body = body_of(parsed(notice))
        assert "Ein leerer Anhang „leer.log“ wurde nicht gespeichert." in body and "leer.pdf (0" not in body


async def test_outlook_underscore_reply_never_sends_the_notice_to_the_customer(tmp_path: Path) -> None:
    """An operator's reply quoting our notice below Outlook's underscore line sends the customer only the new text."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(ANNA, subject="Backup fehlt", body="Das Backup von gestern fehlt."))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        address = str(parsed(notice)["Reply-To"])
        quoted = body_of(parsed(notice))
        body = f"Das Backup ist wieder da.\n\n{'_' * 32}\n{quoted}"
        await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: Backup fehlt", body=body),
                      mail_from=OPERATOR, rcpt=[address])
        await quiet(daemon)
        sent = customer_mails(sink)
        assert len(sent) == 2 and "Das Backup ist wieder da." in sent[1]
        for line in quoted.splitlines():
            if line.strip() and line.strip() not in ("--", "Das Backup von gestern fehlt."):
                assert line not in sent[1], line
