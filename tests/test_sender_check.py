"""What operators learn about a sender's authenticity, and what a forged Authentication-Results cannot do."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import make_mail
from tests.outbound import OPERATOR, body_of, deliver, desk, mails_to, parsed, to
from tests.test_requests_by_mail import organisation
from tests.test_threading import ticket

CHEF = "chef@kunde.example"
TRUSTED = {"operators": {"addresses": [OPERATOR], "authserv_id": "mx.example.net"}}


async def _notice_lines(tmp_path: Path, headers: dict[str, str], **config: dict[str, object]) -> list[str]:
    async with desk(tmp_path, **config) as (daemon, sink):
        await organisation(daemon, {CHEF: {"authorised": True, "role": "manager"}})
        await deliver(daemon, make_mail(CHEF, subject="Bitte Firewall öffnen", headers=headers))
        [notice] = await mails_to(sink, 1, where=to(OPERATOR))
        return body_of(parsed(notice)).splitlines()


async def test_a_dmarc_failing_mail_of_an_authorised_contact_is_no_instruction(tmp_path: Path) -> None:
    """A mail in an authorised contact's name that our MTA found failing DMARC says "Weisung: NEIN" and "probably forged"."""
    failing = "mx.example.net; dmarc=fail (p=reject dis=reject) header.from=kunde.example"
    lines = await _notice_lines(tmp_path, {"Authentication-Results": failing}, **TRUSTED)
    assert not any(line.startswith("Weisung: ja") for line in lines)
    assert "Weisung: NEIN, Absender vermutlich gefälscht" in lines
    assert any(line.startswith("Absender: VERMUTLICH GEFÄLSCHT") for line in lines)


async def test_a_dmarc_failing_mail_of_a_lax_domain_is_no_instruction_either(tmp_path: Path) -> None:
    """Even when the domain publishes p=none, a DMARC failure is never called an instruction."""
    failing = "mx.example.net; dmarc=fail (p=none dis=none) header.from=kunde.example"
    lines = await _notice_lines(tmp_path, {"Authentication-Results": failing}, **TRUSTED)
    assert not any(line.startswith("Weisung: ja") for line in lines)
    assert "Weisung: NEIN, Absender vermutlich gefälscht" in lines


async def test_without_an_authentication_result_the_notice_says_the_sender_is_not_verified(tmp_path: Path) -> None:
    """With no verdict of our MTA, "Weisung: ja" comes with a line saying the mail system did not verify the sender."""
    lines = await _notice_lines(tmp_path, {})
    assert "Weisung: ja, von einem weisungsberechtigten Kontakt" in lines
    assert "Absender: vom Mailsystem NICHT bestätigt, die Adresse kann gefälscht sein" in lines


async def test_a_dmarc_pass_says_the_mail_system_confirmed_the_sender(tmp_path: Path) -> None:
    """Our MTA's dmarc=pass for the author's domain is shown as confirmed."""
    passing = "mx.example.net; dkim=pass header.d=kunde.example; dmarc=pass header.from=kunde.example"
    lines = await _notice_lines(tmp_path, {"Authentication-Results": passing}, **TRUSTED)
    assert "Weisung: ja, von einem weisungsberechtigten Kontakt" in lines
    assert "Absender: vom Mailsystem bestätigt (DMARC bestanden)" in lines


async def test_english_notice_says_probably_forged(tmp_path: Path) -> None:
    """The English notice words it too."""
    failing = "mx.example.net; dmarc=fail (p=reject) header.from=kunde.example"
    lines = await _notice_lines(tmp_path, {"Authentication-Results": failing}, mail={"default_language": "en"},
                                **TRUSTED)
    assert "Instruction: NO, the sender is probably forged" in lines
    assert not any(line.startswith("Instruction: yes") for line in lines)


async def test_a_forged_pass_above_our_mtas_header_cannot_add_a_stranger(tmp_path: Path) -> None:
    """With an MTA that appends its verdict and leaves the sender's copy, a forged dmarc=pass on top adds no CC."""
    async with desk(tmp_path, **TRUSTED) as (daemon, sink):
        await deliver(daemon, make_mail("anna@customer.example", subject="Hallo"))
        forged = "mx.example.net; dmarc=pass header.from=customer.example"
        genuine = "mx.example.net; dmarc=none header.from=customer.example"
        raw = make_mail("anna@customer.example", subject="Re: [MH#10000] Hallo", cc="evil@attacker.example")
        raw = (f"Authentication-Results: {forged}\n").encode() + raw.replace(
            b"\nMIME-Version:", f"\nAuthentication-Results: {genuine}\nMIME-Version:".encode(), 1)
        await deliver(daemon, raw)
        detail = await ticket(daemon, 10000)
        assert [p["address"] for p in detail["participants"]] == ["anna@customer.example"]
        assert "cc-not-added:evil@attacker.example" in detail["articles"][-1]["flags"]
        assert not [item for item in sink.received if "evil@attacker.example" in item.rcpt_tos]
