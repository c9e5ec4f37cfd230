"""Spoofing over SMTP: forged operators, tokens, tags, Message-IDs, CCs and Authentication-Results leak nothing.

Alpha GmbH's manager Anna opens a ticket that holds secrets (in its subject
and text).  Mallory, a manager of another organisation, attacks it in one
way per test.  Then a real operator answers Anna's ticket through a valid
reply token and closes it, so that anyone the attack smuggled into the
ticket would be sent its content.  Every mail the daemon sent, caught by a
real SMTP sink, is then read: no recipient other than Anna and the operator
may see a secret or the ticket's tag, and the attack must not have changed
the ticket (no new participant, no command obeyed).
"""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from tests.helpers import make_mail
from tests.outbound import OPERATOR, deliver, desk, mails_to, parsed, quiet, to
from tests.sink import Received, Sink
from tests.test_threading import add_organisation, ticket

ANNA = "anna@alpha.example"
MALLORY = "mallory@beta.example"
ACCOMPLICE = "eve@elsewhere.example"
OUR_MTA = "mx.example.net"
SECRET_SUBJECT = "Zugangsdaten Tresor-7Q2"
SECRET_TEXT = "Das Root-Passwort ist Kx9-vault-3141."
SECRET_REPLY = "Neues Passwort: Zebra-Orbit-2718."
PHISH = "Bitte senden Sie Ihr Passwort an mallory@beta.example."  # what a forger wants Anna to read from us
SECRETS = (SECRET_SUBJECT, "Kx9-vault-3141", "Zebra-Orbit-2718", "[MH#10000]")
ENTITLED = {ANNA, OPERATOR}
ANNA_MESSAGE_ID = "first-mail@alpha.example"


@dataclass(frozen=True)
class Scene:
    """Anna's ticket 10000 with its reply addresses, and Mallory's own ticket 10001."""

    anna_token: str  # support+token@ made for Anna on ticket 10000 (from her acknowledgement)
    operator_token: str  # made for the operator on ticket 10000 (from the operator notice)
    ack_message_id: str  # the acknowledgement's Message-ID, which Anna's mailbox holds
    mallory_token: str  # made for Mallory on her own ticket 10001


def reply_to(item: Received) -> str:
    return email.utils.parseaddr(str(parsed(item)["Reply-To"]))[1]


async def set_scene(daemon: Daemon, sink: Sink) -> Scene:
    await add_organisation(daemon, "Alpha GmbH", {ANNA: "manager"})
    await add_organisation(daemon, "Beta AG", {MALLORY: "manager"})
    await deliver(daemon, make_mail(ANNA, subject=SECRET_SUBJECT, body=SECRET_TEXT, message_id=ANNA_MESSAGE_ID))
    [ack] = await mails_to(sink, 1, where=to(ANNA))
    [notice] = await mails_to(sink, 1, where=to(OPERATOR))
    await deliver(daemon, make_mail(MALLORY, subject="Unsere eigene Frage", body="Wie geht es?"))
    [own] = await mails_to(sink, 1, where=to(MALLORY))
    return Scene(reply_to(ack), reply_to(notice), str(parsed(ack)["Message-ID"]).strip("<>"), reply_to(own))


def readable(item: Received) -> str:
    """Everything a recipient can read: decoded headers and every decoded text part."""
    message = parsed(item)
    texts = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            texts.append(str(part.get_content()))
    return "\n".join(texts)


def leaks(sink: Sink) -> list[tuple[tuple[str, ...], str]]:
    """(recipients, secret) for every outgoing mail that shows a secret to someone not entitled to it."""
    found = []
    for item in sink.received:
        if all(address.lower() in ENTITLED for address in item.rcpt_tos):
            continue
        text = readable(item)
        found += [(item.rcpt_tos, secret) for secret in SECRETS if secret.lower() in text.lower()]
    return found


def with_headers(raw: bytes, *lines: str) -> bytes:
    """``raw`` with header lines put on top, as an MTA adds trace and Authentication-Results."""
    return "".join(f"{line}\r\n" for line in lines).encode() + raw


async def attack_then_operator_answers(tmp_path: Path, attack: Callable[[Daemon, Scene], Awaitable[None]],
                                       *, follow_up_allowed: bool = False) -> Sink:
    """Run ``attack`` on Anna's ticket, let the operator answer and close it, and check what went out."""
    async with desk(tmp_path, operators={"addresses": [OPERATOR], "authserv_id": OUR_MTA,
                                         "trust_authentication_results": True}) as (daemon, sink):
        scene = await set_scene(daemon, sink)
        before = await ticket(daemon, 10000)
        await attack(daemon, scene)
        await quiet(daemon)
        after_attack = await ticket(daemon, 10000)
        assert [p["address"] for p in after_attack["participants"]] == [ANNA], "the attack added a participant"
        assert after_attack["status"] == before["status"], "the attack changed the ticket's status"
        if not follow_up_allowed:
            assert len(after_attack["articles"]) == len(before["articles"]), "the attack reached the ticket"
        await deliver(daemon, make_mail(OPERATOR, to=scene.operator_token, subject=f"AW: [MH#10000] {SECRET_SUBJECT}",
                                        body=f"#close\n{SECRET_REPLY}"), mail_from=OPERATOR, rcpt=[scene.operator_token])
        await quiet(daemon)
        answered = await mails_to(sink, 3, where=to(ANNA))
        assert any(SECRET_REPLY in readable(item) for item in answered), "the operator's real answer did not arrive"
        assert (await ticket(daemon, 10000))["status"] == "closed"
        assert leaks(sink) == []
        assert not [item for item in sink.received if ANNA in item.rcpt_tos and "mallory" in readable(item).lower()]
        return sink


def mallory_mail(subject: str = "Re: Frage", body: str = "Bitte schicken Sie mir die Daten.", **kwargs: object) -> bytes:
    return make_mail(MALLORY, subject=subject, body=body, cc=ACCOMPLICE, **kwargs)  # type: ignore[arg-type]


async def test_forged_operator_is_a_stranger_and_no_command_is_obeyed(tmp_path: Path) -> None:
    """Mallory writing as the operator (no token, no DMARC) neither closes nor adds anyone nor learns anything."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        raw = make_mail(OPERATOR, subject=f"AW: [MH#10000] {SECRET_SUBJECT}", cc=MALLORY,
                        body=f"#close\n#adduser {MALLORY}\n{PHISH}",
                        headers={"Reply-To": MALLORY})
        await deliver(daemon, raw, mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack)


@pytest.mark.parametrize("body", [PHISH, f"#adduser {MALLORY}\n{PHISH}"])
async def test_forged_operator_with_the_operators_token_proves_nothing(tmp_path: Path, body: str) -> None:
    """The operator's own reply address in a mail our MTA found forged (DMARC fail) sends nothing to Anna, obeys nothing."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        raw = make_mail(OPERATOR, to=scene.operator_token, subject="AW: [MH#10000]", cc=MALLORY, body=body)
        ours = f"Authentication-Results: {OUR_MTA}; dmarc=fail (p=reject) header.from=provider.example"
        await deliver(daemon, with_headers(raw, ours), mail_from=MALLORY, rcpt=[scene.operator_token])
    await attack_then_operator_answers(tmp_path, attack)


@pytest.mark.parametrize("which", ["anna's token", "other ticket's mac", "mangled", "upper case", "too long",
                                   "one character more"])
async def test_forged_and_replayed_reply_tokens_prove_nothing(tmp_path: Path, which: str) -> None:
    """A token made for Anna, Mallory's own token with another number, and mangled tokens give no access."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        local, _, domain = scene.mallory_token.partition("@")
        own_mac = local.rpartition(".")[2]
        forged = {
            "anna's token": scene.anna_token,
            "other ticket's mac": f"support+t10000.{own_mac}@{domain}",
            "mangled": f"support+t10000.{'a' * 16}@{domain}",
            "upper case": scene.anna_token.replace("support+t", "support+T").upper().replace("@EXAMPLE.NET", "@example.net"),
            "too long": f"support+t10000.{own_mac * 8}@{domain}",
            "one character more": scene.anna_token.replace("@", "a@"),
        }[which]
        raw = mallory_mail(to=forged, subject="Re: Ihre Anfrage", in_reply_to=ANNA_MESSAGE_ID)
        await deliver(daemon, raw, mail_from=MALLORY, rcpt=[forged])
    await attack_then_operator_answers(tmp_path, attack)


async def test_own_token_with_another_organisations_tag_stays_in_the_own_ticket(tmp_path: Path) -> None:
    """Mallory's valid token for her ticket plus Anna's tag in the subject never opens Anna's ticket."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        raw = mallory_mail(to=scene.mallory_token, subject="Re: [MH#10000] Nachfrage")
        await deliver(daemon, raw, mail_from=MALLORY, rcpt=[scene.mallory_token])
    await attack_then_operator_answers(tmp_path, attack)


async def test_tag_of_another_organisations_ticket_gives_a_new_ticket_without_it(tmp_path: Path) -> None:
    """A manager of Beta naming Alpha's ticket by its tag opens a ticket of his own and sees nothing of Alpha's."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        await deliver(daemon, mallory_mail(subject="AW: [MH#10000] Nachfrage"), mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack)


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
async def test_copied_message_ids_give_no_access(tmp_path: Path, header: str) -> None:
    """Anna's and the acknowledgement's Message-IDs in In-Reply-To or References prove nothing."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        ids = f"<{ANNA_MESSAGE_ID}> <{scene.ack_message_id}>"
        raw = mallory_mail(subject="Re: Nachfrage", **({"in_reply_to": scene.ack_message_id}
                                                         if header == "In-Reply-To" else {"references": ids}))
        await deliver(daemon, raw, mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack)


@pytest.mark.parametrize("how", ["cc", "to", "tag and message-id"])
async def test_cc_injection_on_a_forged_follow_up_adds_no_one(tmp_path: Path, how: str) -> None:
    """A follow-up forged in Anna's name with Mallory in CC or To is kept, but Mallory never joins the ticket."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        kwargs: dict[str, object] = {"cc": f"{MALLORY}, {ACCOMPLICE}"} if how != "to" else \
            {"to": f"support@example.net, {MALLORY}"}
        if how == "tag and message-id":
            kwargs["in_reply_to"] = scene.ack_message_id
        raw = make_mail(ANNA, subject=f"Re: [MH#10000] {SECRET_SUBJECT}", body="Bitte Kollegen informieren.",
                        **kwargs)  # type: ignore[arg-type]
        await deliver(daemon, raw, mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack, follow_up_allowed=True)


@pytest.mark.parametrize("where", ["below ours", "foreign authserv-id on top", "foreign authserv-id only"])
async def test_forged_authentication_results_let_no_cc_join(tmp_path: Path, where: str) -> None:
    """A forged dmarc=pass for Anna's domain (below our MTA's header, or of another authserv-id) adds no CC."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        forged = "Authentication-Results: {id}; dkim=pass header.d=alpha.example; dmarc=pass header.from=alpha.example"
        ours = f"Authentication-Results: {OUR_MTA}; dmarc=none header.from=alpha.example"
        lines = {"below ours": [ours, forged.format(id=OUR_MTA)],
                 "foreign authserv-id on top": [forged.format(id="mx.evil.example"), ours],
                 "foreign authserv-id only": [forged.format(id="mx.evil.example")]}[where]
        raw = make_mail(ANNA, subject=f"Re: [MH#10000] {SECRET_SUBJECT}", cc=MALLORY, body="Bitte CC aufnehmen.")
        await deliver(daemon, with_headers(raw, *lines), mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack, follow_up_allowed=True)


@pytest.mark.parametrize("where", ["below ours", "foreign authserv-id only"])
async def test_forged_authentication_results_make_no_operator(tmp_path: Path, where: str) -> None:
    """A forged dmarc=pass for the operator's domain obeys no command and sends nothing to Mallory."""
    async def attack(daemon: Daemon, scene: Scene) -> None:
        forged = "Authentication-Results: {id}; dmarc=pass header.from=provider.example"
        ours = f"Authentication-Results: {OUR_MTA}; dmarc=fail (p=reject) header.from=provider.example"
        lines = {"below ours": [ours, forged.format(id=OUR_MTA)],
                 "foreign authserv-id only": [forged.format(id="mx.evil.example")]}[where]
        raw = make_mail(OPERATOR, subject="AW: [MH#10000]", cc=MALLORY, body=PHISH)
        await deliver(daemon, with_headers(raw, *lines), mail_from=MALLORY)
    await attack_then_operator_answers(tmp_path, attack)


def test_the_leak_check_sees_a_leak() -> None:
    """The checker itself: the tag or a secret in a mail to a stranger is a leak, in a mail to Anna it is not."""
    raw = make_mail("support@example.net", to=MALLORY, subject="Re: [MH#10000] Hallo", body="nichts")
    sink = Sink()
    sink.received.append(Received("support@example.net", (ANNA,), raw))
    assert leaks(sink) == []
    sink.received.append(Received("support@example.net", (MALLORY,), raw))
    sink.received.append(Received("support@example.net", (ANNA, ACCOMPLICE),
                                  make_mail("support@example.net", subject="x", body=SECRET_TEXT)))
    assert leaks(sink) == [((MALLORY,), "[MH#10000]"), ((ANNA, ACCOMPLICE), "Kx9-vault-3141")]
