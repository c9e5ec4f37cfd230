"""The round trip a support desk lives on: customer writes, operator answers by Reply, customer replies."""

from __future__ import annotations

import base64
import re
from email.utils import parsedate_to_datetime
from pathlib import Path

from tests.helpers import SUPPORT, make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, quiet, to
from tests.test_threading import ticket, tickets

CUSTOMER = "anna@customer.example"
COLLEAGUE = "bob@customer.example"


def reply_token_address(message) -> str:
    reply_to = str(message["Reply-To"])
    assert re.fullmatch(r"support\+t\d+\.[a-z2-7]{16}@example\.net", reply_to), reply_to
    return reply_to


async def test_round_trip_customer_operator_customer(tmp_path: Path) -> None:
    """Customer mail → operator told → operator replies from a client → customer gets it from support@ → reply threads."""
    async with desk(tmp_path) as (daemon, sink):
        first = make_mail(CUSTOMER, subject="Server de-fr-srv-0815 antwortet nicht", cc=COLLEAGUE,
                          body="Hallo,\nde-fr-srv-0815 ist seit heute früh weg.\nGruß Anna",
                          message_id="first@customer.example", headers={"Thread-Index": "AdqZAAECAwQFBgcICQoLDA0ODxAREg=="})
        await deliver(daemon, first)

        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        notice_message = parsed(notice)
        assert notice.mail_from == SUPPORT
        assert "[MH#10000]" in notice_message["Subject"]
        assert "UNGEPRÜFTE Adresse" in body_of(notice_message)
        assert "VM: de-fr-srv-0815 [unknown]" in body_of(notice_message)
        operator_reply_to = reply_token_address(notice_message)

        [ack] = await mails_to(sink, 1, where=to(CUSTOMER))
        ack_message = parsed(ack)
        assert ack_message["Subject"] == "[MH#10000] Server de-fr-srv-0815 antwortet nicht"
        assert ack_message["From"].addresses[0].addr_spec == SUPPORT
        assert ack_message["Auto-Submitted"] == "auto-replied"
        assert ack_message["X-Loop"] == SUPPORT
        assert ack_message["In-Reply-To"] == "<first@customer.example>"
        assert "<first@customer.example>" in ack_message["References"]
        assert parsedate_to_datetime(ack_message["Date"]).tzinfo is not None
        assert "/verify/" in body_of(ack_message)
        assert ack_message["Thread-Topic"] == "Server de-fr-srv-0815 antwortet nicht"
        assert ack_message["Thread-Index"].startswith("AdqZAAECAwQFBgcICQoLDA0ODxAR")
        assert len(base64.b64decode(ack_message["Thread-Index"])) == 27
        assert not [item for item in sink.received if COLLEAGUE in item.rcpt_tos]  # CCs are only registered

        # The operator presses "Reply" in Outlook: German quote header, the notice quoted below.
        quoted = "\n".join(f"> {line}" for line in body_of(notice_message).splitlines())
        answer = make_mail(
            f"Olga Operator <{OPERATOR}>", to=operator_reply_to,
            subject=f"AW: {notice_message['Subject']}", message_id="answer@provider.example",
            in_reply_to=notice_message["Message-ID"].strip("<>"),
            body=("Hallo Anna,\n\nwir haben die VM neu gestartet, sie läuft wieder.\n\n"
                  "-----Ursprüngliche Nachricht-----\nVon: Support <support@example.net>\n"
                  "Gesendet: Montag, 2. Februar 2026 10:00\nAn: op@provider.example\n"
                  f"Betreff: {notice_message['Subject']}\n\n{quoted}\n"),
        )
        await deliver(daemon, answer, mail_from=OPERATOR, rcpt=[operator_reply_to])
        answers = await mails_to(sink, 2, where=lambda item: "neu gestartet" in body_of(parsed(item)))
        assert sorted(item.rcpt_tos[0] for item in answers) == [CUSTOMER, COLLEAGUE]
        for item in answers:
            message = parsed(item)
            text = body_of(message)
            assert "wir haben die VM neu gestartet, sie läuft wieder." in text
            assert "Ursprüngliche Nachricht" not in text and "Gesendet:" not in text
            assert OPERATOR.encode() not in item.raw and b"Olga" not in item.raw
            assert message["From"].addresses[0].addr_spec == SUPPORT
            assert message["Subject"] == "[MH#10000] Server de-fr-srv-0815 antwortet nicht"
            assert "answer@provider.example" not in f"{message['In-Reply-To']} {message['References']}"
            assert "<first@customer.example>" in message["References"]
        [to_customer] = [parsed(item) for item in answers if CUSTOMER in item.rcpt_tos]
        customer_reply_to = reply_token_address(to_customer)
        assert customer_reply_to != operator_reply_to

        # The customer replies to that, from Thunderbird, quoting it.
        again = make_mail(CUSTOMER, to=customer_reply_to, subject=f"Re: {to_customer['Subject']}",
                          in_reply_to=to_customer["Message-ID"].strip("<>"),
                          body=("Danke, läuft!\n\nAm 02.02.26 um 10:05 schrieb Support:\n"
                                + "\n".join(f"> {line}" for line in body_of(to_customer).splitlines())))
        await deliver(daemon, again, rcpt=[customer_reply_to])
        await quiet(daemon)

        assert len(await tickets(daemon)) == 1
        detail = await ticket(daemon, 10000)
        assert [(a["kind"], a["author_status"]) for a in detail["articles"]] == [
            ("mail", "unverified"), ("reply", "operator"), ("mail", "unverified")]
        assert detail["articles"][1]["visible_text"] == "Hallo Anna,\n\nwir haben die VM neu gestartet, sie läuft wieder."
        assert detail["articles"][2]["visible_text"] == "Danke, läuft!"
        assert detail["status"] == "open"
        update = await mails_to(sink, 2, where=to(OPERATOR))
        assert "Antwort des Kunden" in parsed(update[-1])["Subject"]


async def test_forged_operator_without_token_is_a_stranger(tmp_path: Path) -> None:
    """An operator address without a reply token opens a new ticket, and no customer hears from it."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Hilfe"))
        await mails_to(sink, 2)
        forged = make_mail(OPERATOR, subject="AW: [MH#10000] Hilfe", body="#close\nErledigt.")
        await deliver(daemon, forged, mail_from=OPERATOR)
        await quiet(daemon)
        assert [t["status"] for t in await tickets(daemon)] == ["new", "new"]
        assert len([item for item in sink.received if CUSTOMER in item.rcpt_tos]) == 1  # only the first ack
        flags = (await ticket(daemon, 10001))["articles"][0]["flags"]
        assert "operator-address-without-proof" in flags


async def test_token_of_another_ticket_or_tampered_is_no_proof(tmp_path: Path) -> None:
    """A token made for ticket A, re-numbered for ticket B, or altered, does not make its sender an operator."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Erstes"))
        await deliver(daemon, make_mail("carl@other.example", subject="Zweites"))
        notices = await mails_to(sink, 2, where=to(OPERATOR))
        token_a = reply_token_address(parsed(notices[0]))
        renumbered = token_a.replace("+t10000.", "+t10001.")
        tampered = token_a[:-len("@example.net") - 1] + ("a" if token_a[-13] != "a" else "b") + "@example.net"
        for address in (renumbered, tampered):
            await deliver(daemon, make_mail(OPERATOR, to=address, subject="AW: [MH#10001] Zweites",
                                            body="#close\nErledigt."), mail_from=OPERATOR, rcpt=[address])
        await quiet(daemon)
        numbers = {t["number"]: t["status"] for t in await tickets(daemon)}
        assert numbers[10000] == "new" and numbers[10001] == "new"
        assert len(numbers) == 4  # both attempts opened tickets of their own
        assert not [item for item in sink.received if "carl@other.example" in item.rcpt_tos
                    and b"Erledigt" in item.raw]
        for number in (10002, 10003):
            flags = (await ticket(daemon, number))["articles"][0]["flags"]
            assert "reply-token-not-valid-for-sender" in flags


async def test_customer_token_used_by_someone_else_proves_nothing(tmp_path: Path) -> None:
    """A customer's reply address forwarded to a stranger does not let the stranger into the ticket."""
    async with desk(tmp_path) as (daemon, sink):
        await deliver(daemon, make_mail(CUSTOMER, subject="Vertraulich"))
        [ack] = await mails_to(sink, 1, where=to(CUSTOMER))
        address = reply_token_address(parsed(ack))
        await deliver(daemon, make_mail("mallory@evil.example", to=address, subject="Re: Vertraulich"),
                      rcpt=[address])
        assert len(await tickets(daemon)) == 2
