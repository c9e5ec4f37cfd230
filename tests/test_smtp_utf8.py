"""Non-ASCII addresses: SMTPUTF8 on the way in and out; an undeliverable one is flagged on its person only."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosmtplib

from mailticketd.app import Daemon
from mailticketd.mail.compose import compose
from mailticketd.outbox.transports import PermanentFailure
from mailticketd.outbox.transports.smtp import SmtpTransport
from tests.helpers import SUPPORT, make_config, settle
from tests.outbound import OPERATOR, body_of, deliver, mails_to, parsed, quiet, to
from tests.sink import Sink

JOERG = "jörg@exämple.de"
JOERG_ON_THE_WIRE = "jörg@xn--exmple-cua.de"  # the domain in IDNA form, the local part in UTF-8
CUSTOMER = "anna@customer.example"


def utf8_mail(sender: str, *, cc: str | None = None, subject: str = "Grüße") -> bytes:
    """A mail with UTF-8 in its headers, as an SMTPUTF8 client sends it (RFC 6532)."""
    lines = [f"From: {sender}", f"To: {SUPPORT}", f"Subject: {subject}", "Message-ID: <utf8-1@exämple.de>",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    if cc:
        lines.append(f"Cc: {cc}")
    return ("\r\n".join(lines) + "\r\n\r\nGuten Tag, bitte prüfen.\r\n").encode()


async def test_a_non_ascii_envelope_sender_is_accepted_with_smtputf8(daemon: Daemon) -> None:
    """EHLO offers SMTPUTF8 and ``MAIL FROM:<jörg@exämple.de> SMTPUTF8`` is taken and stored as written."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
        await client.ehlo()
        assert client.supports_extension("smtputf8")
        errors, reply = await client.sendmail(JOERG, [SUPPORT], utf8_mail(f"Jörg <{JOERG}>"),
                                              mail_options=["SMTPUTF8"])
    assert not errors and reply.startswith("2.0.0")
    async with daemon.db.read() as store:
        [row] = await store.inbox.list(("pending", "done", "failed"))
    assert row.mail_from == JOERG


async def test_a_non_ascii_sender_without_the_smtputf8_keyword_is_not_refused_for_good(daemon: Daemon) -> None:
    """A client that sends a UTF-8 address without saying SMTPUTF8 gets 250, not a permanent 500."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
    try:
        await reader.readline()
        answers = []
        for command in (b"HELO client.example", f"MAIL FROM:<{JOERG}>".encode(), f"RCPT TO:<{SUPPORT}>".encode()):
            writer.write(command + b"\r\n")
            answers.append(await reader.readline())
    finally:
        writer.close()
    assert [answer[:3] for answer in answers] == [b"250", b"250", b"250"], answers


async def test_bytes_that_are_no_utf8_in_an_address_get_a_clear_answer(daemon: Daemon) -> None:
    """An envelope address with invalid UTF-8 gets 501 5.1.7 and the session goes on."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.smtp_port)
    try:
        await reader.readline()
        answers = []
        for command in (b"HELO client.example", b"MAIL FROM:<j\xf6rg@example.de>", b"NOOP"):
            writer.write(command + b"\r\n")
            answers.append(await reader.readline())
    finally:
        writer.close()
    assert answers[1].startswith(b"501 5.1.7") and answers[2].startswith(b"250"), answers


async def test_a_non_ascii_sender_gets_a_ticket_and_an_acknowledgement(daemon: Daemon) -> None:
    """``From: Jörg <jörg@exämple.de>`` opens a ticket and Jörg's acknowledgement is written, nothing fails."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port) as client:
        await client.sendmail(JOERG, [SUPPORT], utf8_mail(f"Jörg <{JOERG}>"), mail_options=["SMTPUTF8"])
    await settle(daemon)
    async with daemon.db.read() as store:
        [row] = await store.inbox.list(("pending", "done", "failed"))
        outgoing = await store.outbox.list(("queued", "sent", "failed"))
    assert (row.status, row.decision) == ("done", "new")
    [ack] = [item for item in outgoing if item.kind == "ack"]
    assert ack.rcpt_to == JOERG


def test_composing_for_a_non_ascii_address_makes_an_internationalised_mail() -> None:
    """A mail to jörg@exämple.de carries the address in UTF-8 (RFC 6532); joerg@exämple.de stays ASCII via IDNA."""
    from datetime import datetime, timezone

    def mail_to(address: str) -> bytes:
        return compose(sender_name="Support", sender=SUPPORT, to=address, to_name="Jörg Müller", subject="Grüße",
                       body="Hallo", now=datetime.now(timezone.utc), message_id="1@example.net", loop=SUPPORT).raw

    utf8 = email.message_from_string(mail_to(JOERG).decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert utf8["To"].addresses[0].addr_spec == JOERG_ON_THE_WIRE
    assert utf8["To"].addresses[0].display_name == "Jörg Müller"
    ascii_only = mail_to("joerg@exämple.de")
    assert ascii_only.isascii() and b"joerg@xn--exmple-cua.de" in ascii_only


async def test_a_relay_offering_smtputf8_gets_the_internationalised_mail(tmp_path: Path) -> None:
    """Through a relay that offers SMTPUTF8, the mail to jörg@exämple.de is delivered with SMTPUTF8."""
    from datetime import datetime, timezone

    raw = compose(sender_name="Support", sender=SUPPORT, to=JOERG, subject="Grüße", body="Hallo",
                  now=datetime.now(timezone.utc), message_id="2@example.net", loop=SUPPORT).raw
    async with Sink(smtputf8=True) as sink:
        await SmtpTransport(sink.host, sink.port, security="none").send(SUPPORT, JOERG, raw)
    [received] = sink.received
    assert received.rcpt_tos == (JOERG_ON_THE_WIRE,)


async def test_a_relay_without_smtputf8_fails_that_mail_for_good_and_an_ascii_idn_goes_through(
        tmp_path: Path) -> None:
    """Without SMTPUTF8 the mail to jörg@ is a permanent failure; joerg@exämple.de goes out with its IDNA domain."""
    from datetime import datetime, timezone

    def mail_to(address: str) -> bytes:
        return compose(sender_name="Support", sender=SUPPORT, to=address, subject="Grüße", body="Hallo",
                       now=datetime.now(timezone.utc), message_id="3@example.net", loop=SUPPORT).raw

    async with Sink() as sink:
        transport = SmtpTransport(sink.host, sink.port, security="none")
        try:
            await transport.send(SUPPORT, JOERG, mail_to(JOERG))
        except PermanentFailure as failure:
            refused = failure.message
        await transport.send(SUPPORT, "joerg@exämple.de", mail_to("joerg@exämple.de"))
    assert "SMTPUTF8" in refused
    assert [item.rcpt_tos for item in sink.received] == [("joerg@xn--exmple-cua.de",)]


@asynccontextmanager
async def desk(tmp_path: Path, *, smtputf8: bool) -> AsyncIterator[tuple[Daemon, Sink]]:
    """The daemon sending through a real SMTP sink that does or does not offer SMTPUTF8."""
    async with Sink(smtputf8=smtputf8) as sink:
        config = make_config(tmp_path, outbound={"transport": "smtp", "relay": sink.relay, "relay_security": "none",
                                                 "retry_delay": 0.2, "poll_interval": 0.1})
        async with Daemon(config) as daemon:
            yield daemon, sink


async def _operator_replies_on_a_ticket_with_joerg_in_cc(daemon: Daemon, sink: Sink) -> None:
    await deliver(daemon, utf8_mail(CUSTOMER, cc=f"Jörg <{JOERG}>", subject="Backup fehlt"),
                  mail_from=CUSTOMER)
    [notice] = await mails_to(sink, 1, where=to(OPERATOR))
    token_address = str(parsed(notice)["Reply-To"])
    reply = (f"From: {OPERATOR}\r\nTo: {token_address}\r\nSubject: AW: [MH#10000] Backup fehlt\r\n"
             "Message-ID: <op-1@provider.example>\r\n\r\nDas Backup ist wieder da.\r\n").encode()
    await deliver(daemon, reply, mail_from=OPERATOR, rcpt=[token_address])
    await quiet(daemon)


async def test_an_operator_reply_reaches_a_non_ascii_cc_through_an_smtputf8_relay(tmp_path: Path) -> None:
    """With jörg@exämple.de in CC, the operator's reply reaches the customer and Jörg, and no mail fails."""
    async with desk(tmp_path, smtputf8=True) as (daemon, sink):
        await _operator_replies_on_a_ticket_with_joerg_in_cc(daemon, sink)
        [to_joerg] = await mails_to(sink, 1, where=to(JOERG_ON_THE_WIRE))
        assert "Das Backup ist wieder da." in body_of(parsed(to_joerg))
        assert any("Das Backup" in body_of(parsed(item)) for item in await mails_to(sink, 2, where=to(CUSTOMER)))
        async with daemon.db.read() as store:
            assert {row.status for row in await store.inbox.list(("pending", "done", "failed"))} == {"done"}
            assert await store.outbox.list(("failed",)) == []


async def test_a_relay_without_smtputf8_flags_only_the_non_ascii_person(tmp_path: Path) -> None:
    """Without SMTPUTF8 at the relay, the reply still reaches the customer; Jörg is flagged, operators are told."""
    async with desk(tmp_path, smtputf8=False) as (daemon, sink):
        await _operator_replies_on_a_ticket_with_joerg_in_cc(daemon, sink)
        assert any("Das Backup" in body_of(parsed(item)) for item in await mails_to(sink, 2, where=to(CUSTOMER)))
        notices = await mails_to(sink, 1, where=lambda item: OPERATOR in item.rcpt_tos
                                 and "SMTPUTF8" in body_of(parsed(item)))
        assert JOERG in body_of(parsed(notices[0]))
        async with daemon.db.read() as store:
            assert {row.status for row in await store.inbox.list(("pending", "done", "failed"))} == {"done"}
            [failed] = await store.outbox.list(("failed",))
            joerg = (await store.users.by_addresses([JOERG]))[JOERG]
        assert failed.rcpt_to == JOERG
        assert joerg.delivery_failure is not None and "SMTPUTF8" in joerg.delivery_failure
        assert not any(JOERG_ON_THE_WIRE in item.rcpt_tos for item in sink.received)
