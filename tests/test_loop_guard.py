"""The loop guard at work: what must never be answered is stored but gets no automatic mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CORPUS, make_mail, send
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_threading import ticket, tickets

CUSTOMER = "anna@customer.example"
TRUSTED = {"operators": {"addresses": [OPERATOR], "authserv_id": "mx.example.net"}}


@pytest.mark.parametrize(("sender", "mail_from", "headers"), [
    (CUSTOMER, CUSTOMER, {"Auto-Submitted": "auto-replied"}),
    (CUSTOMER, CUSTOMER, {"Precedence": "bulk"}),
    (CUSTOMER, CUSTOMER, {"Precedence": "junk"}),
    (CUSTOMER, CUSTOMER, {"Precedence": "list"}),
    (CUSTOMER, CUSTOMER, {"X-Auto-Response-Suppress": "OOF"}),
    (CUSTOMER, "", {}),
    ("MAILER-DAEMON@mx.customer.example", "", {}),
    (CUSTOMER, CUSTOMER, {"X-Loop": "support@example.net"}),
    ("helpdesk@example.net", "helpdesk@example.net", {}),
    (CUSTOMER, CUSTOMER, {"X-Spam-Flag": "YES"}),
    (CUSTOMER, CUSTOMER, {"X-Spam-Status": "Yes, score=12.3 required=5.0"}),
    (CUSTOMER, CUSTOMER, {"Authentication-Results": "mx.example.net; dmarc=fail (p=reject) header.from=customer.example"}),
], ids=["auto-submitted", "bulk", "junk", "list", "x-auto-response-suppress", "empty-return-path",
        "mailer-daemon", "own-x-loop", "own-address", "spam-flag", "spam-status", "dmarc-fail"])
async def test_mail_that_must_not_be_answered_is_stored_without_answer(
        tmp_path: Path, sender: str, mail_from: str, headers: dict[str, str]) -> None:
    """The mail is kept on a ticket, marked no-auto-reply, and no mail goes back to its sender."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail(sender, subject="Abwesenheit", headers=headers), mail_from=mail_from)
        await quiet(daemon)
        [only] = await tickets(daemon)
        flags = (await ticket(daemon, only["number"]))["articles"][0]["flags"]
        assert any(flag.startswith("no-auto-reply:") for flag in flags)
        assert not [item for item in sink.received if sender.lower() in item.rcpt_tos]


async def test_spam_and_forged_mail_are_still_shown_to_operators(tmp_path: Path) -> None:
    """Spam-flagged mail gets no answer but operators are told, with the reason."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, headers={"X-Spam-Flag": "YES"}))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        assert "Hinweis: Keine automatische Antwort, denn der Spamfilter hat sie markiert." in body_of(parsed(notice))


async def test_authentication_results_of_a_foreign_host_are_ignored(tmp_path: Path) -> None:
    """A dmarc=fail verdict from a host that is not our MTA is not believed: the sender is acknowledged."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        forged = "evil.example; dmarc=fail header.from=customer.example"
        await deliver(daemon, make_mail(CUSTOMER, headers={"Authentication-Results": forged}))
        await mails_to(sink, 1, where=to(CUSTOMER))


async def test_out_of_office_storm_gets_no_answer(tmp_path: Path) -> None:
    """Fifty out-of-office replies from one address are all stored and none is answered."""
    async with desk(tmp_path) as (daemon, sink):
        for index in range(50):
            await send(daemon.smtp_port, make_mail(CUSTOMER, subject=f"Abwesend: Ihre Anfrage {index}",
                                                   headers={"Auto-Submitted": "auto-replied"}), mail_from="")
        await quiet(daemon)
        assert len(await tickets(daemon)) == 50
        assert not [item for item in sink.received if CUSTOMER in item.rcpt_tos]


async def test_automatic_answers_to_one_address_are_limited_per_hour(tmp_path: Path) -> None:
    """Fifty new mails from one address that carry no auto-reply marks get at most the configured acknowledgements."""
    async with desk(tmp_path, notify={"max_auto_replies_per_hour": 3}) as (daemon, sink):
        for index in range(50):
            await send(daemon.smtp_port, make_mail(CUSTOMER, subject=f"Ticket {index}"))
        await quiet(daemon)
        assert len(await tickets(daemon)) == 50
        acks = [item for item in sink.received if CUSTOMER in item.rcpt_tos]
        assert len(acks) == 3
        operators = [item for item in sink.received if OPERATOR in item.rcpt_tos]
        assert len(operators) == 50  # operators still see every ticket


async def test_no_mail_is_ever_sent_to_our_own_addresses(tmp_path: Path) -> None:
    """Our own addresses in CC never become participants or recipients."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, cc="helpdesk@example.net, support+x@example.net"))
        await quiet(daemon)
        recipients = {rcpt for item in sink.received for rcpt in item.rcpt_tos}
        assert recipients == {CUSTOMER, OPERATOR}


async def test_bounce_of_our_mail_is_a_note_on_its_ticket_and_flags_the_address(tmp_path: Path) -> None:
    """A DSN naming our acknowledgement lands on that ticket as a bounce, the address is flagged, operators told."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        [ack] = await mails_to(sink, 1, where=to(CUSTOMER))
        original = parsed(ack)["Message-ID"]
        dsn = _dsn(CUSTOMER, original)
        await deliver(daemon, dsn, mail_from="")
        await quiet(daemon)
        assert len(await tickets(daemon)) == 1
        article = (await ticket(daemon, 10000))["articles"][-1]
        assert article["kind"] == "bounce"
        assert f"delivery-failed:{CUSTOMER}" in article["flags"]
        async with daemon.db.read() as store:
            [flagged] = await store.conn.execute_fetchall("SELECT delivery_failed_at FROM users WHERE address = ?",
                                                          (CUSTOMER,))
        assert flagged[0] is not None
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        assert "Unzustellbarkeitsmeldung" in parsed(notices[-1])["Subject"]
        assert not [item for item in sink.received if "mailer-daemon" in " ".join(item.rcpt_tos).lower()]


@pytest.mark.parametrize("name", ["sisimai-lhost-postfix-70.eml", "sisimai-email-exim-02.eml",
                                  "chatwoot-bounced_with_no_from.eml"])
async def test_corpus_bounces_are_never_answered(tmp_path: Path, name: str) -> None:
    """Real-world bounces are stored and nothing is sent to their senders."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, (CORPUS / name).read_bytes(), mail_from="")
        await quiet(daemon)
        assert all(item.rcpt_tos == (OPERATOR,) for item in sink.received)


def _dsn(recipient: str, original_message_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n"
        "To: support@example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.customer.example>\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <support@example.net>\r\nTo: {recipient}\r\nSubject: [MH#10000] Hallo\r\n"
        f"Message-ID: {original_message_id}\r\n"
        "--B--\r\n"
    ).encode()


async def test_tag_reply_cannot_add_a_stranger_as_participant(tmp_path: Path) -> None:
    """A follow-up found by tag (a forger could copy it) adds no new CC; a reply through the reply token does."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        [ack] = await mails_to(sink, 1, where=to(CUSTOMER))
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Hallo", cc="evil@attacker.example"))
        detail = await ticket(daemon, 10000)
        assert [p["address"] for p in detail["participants"]] == [CUSTOMER]
        assert "cc-not-added:evil@attacker.example" in detail["articles"][-1]["flags"]
        token = str(parsed(ack)["Reply-To"])
        await deliver(daemon, make_mail(CUSTOMER, to=token, subject="Re: [MH#10000] Hallo",
                                        cc="kollege@customer.example"), rcpt=[token])
        participants = [p["address"] for p in (await ticket(daemon, 10000))["participants"]]
        assert participants == [CUSTOMER, "kollege@customer.example"]


async def test_dmarc_failing_mail_cannot_join_a_ticket(tmp_path: Path) -> None:
    """A participant's address with dmarc=fail from our MTA opens a new ticket instead of a follow-up."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        forged = "mx.example.net; dmarc=fail header.from=customer.example"
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Hallo",
                                        headers={"Authentication-Results": forged}))
        assert len(await tickets(daemon)) == 2
        assert len((await ticket(daemon, 10000))["articles"]) == 1


async def test_a_fake_bounce_neither_joins_a_ticket_nor_flags_others(tmp_path: Path) -> None:
    """A 'bounce' with a sender address is no report; a real one flags only the address the mail went to."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        async with daemon.db.transaction() as store:
            await store.users.create("victim@customer.example")
        [ack] = await mails_to(sink, 1, where=to(CUSTOMER))
        original = parsed(ack)["Message-ID"]
        await deliver(daemon, _dsn(CUSTOMER, original), mail_from="postmaster@attacker.example")
        assert len(await tickets(daemon)) == 2  # not matched: it opened a ticket of its own
        forged = _dsn(CUSTOMER, original).replace(b"dsn-1@", b"dsn-2@").replace(b"Auto-Submitted: auto-replied\r\n",
                                                   b"Auto-Submitted: auto-replied\r\nX-Failed-Recipients: "
                                                   b"victim@customer.example\r\n")
        await deliver(daemon, forged, mail_from="")
        async with daemon.db.read() as store:
            flagged = dict(await store.conn.execute_fetchall("SELECT address, delivery_failed_at IS NOT NULL FROM users"))
        assert flagged == {CUSTOMER: 1, "victim@customer.example": 0}


async def test_dmarc_failure_counts_even_on_spam_and_only_for_enforcing_domains(tmp_path: Path) -> None:
    """A spam-flagged forgery (dmarc=fail, p=reject) joins no ticket; a p=none domain's reply still does."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        forged = "mx.example.net; dmarc=fail (p=reject dis=reject) header.from=customer.example"
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Hallo", body="gefälscht",
                                        headers={"Authentication-Results": forged, "X-Spam-Flag": "YES"}))
        assert len(await tickets(daemon)) == 2
        lax = "mx.example.net; dmarc=fail (p=none dis=none) header.from=customer.example"
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Hallo", body="echt",
                                        headers={"Authentication-Results": lax}))
        assert len(await tickets(daemon)) == 2
        assert [a["visible_text"] for a in (await ticket(daemon, 10000))["articles"]][-1] == "echt"


async def test_dmarc_aligned_reply_by_tag_may_add_a_colleague(tmp_path: Path) -> None:
    """When our MTA vouches for the sender (dmarc=pass), a follow-up by tag adds the new CC as participant."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hallo"))
        vouched = "mx.example.net; dkim=pass header.d=customer.example; dmarc=pass header.from=customer.example"
        await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Hallo", cc="kollege@customer.example",
                                        headers={"Authentication-Results": vouched}))
        assert [p["address"] for p in (await ticket(daemon, 10000))["participants"]] == [
            CUSTOMER, "kollege@customer.example"]
