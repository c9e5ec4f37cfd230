"""A real MTA in front of the daemon and behind it, and swaks as the SMTP client.

Postfix (a private instance per test, ``tests/mta.py``) accepts mail for the
support domain and relays it to the daemon by its transport map; the daemon's
outbound relay is that same Postfix, which delivers customers' and operators'
mail to a real SMTP sink.  The daemon runs as a real process.  Set-up:
``bash tests/setup-system.sh``; see ``docs/mta.md`` for the snippets these tests
exercise.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SUPPORT, free_port, make_mail
from tests.mta import HOSTNAME, Postfix, command, threaded_sink, wait_for
from tests.process import DaemonProcess, cli
from tests.sink import Received, Sink

CUSTOMER = "anna@customer.example"
OPERATOR = "op@provider.example"
DESK_HOSTNAME = "desk.example.net"

Desk = Callable[..., DaemonProcess]


# -- the pieces: a sink, a Postfix routed to the daemon and the sink, the daemon as a process


@pytest.fixture
def sink() -> Iterator[Sink]:
    with threaded_sink() as running:
        yield running


@pytest.fixture
def desk_port() -> int:
    return free_port()


@pytest.fixture
def postfix(tmp_path: Path, sink: Sink, desk_port: int) -> Iterator[Postfix]:
    """Postfix on a loopback port: example.net to the daemon, the customers' and operators' domains to the sink."""
    routes = {"example.net": desk_port, "customer.example": sink.port, "provider.example": sink.port}
    with Postfix(routes, keep_log=tmp_path / "postfix.log") as running:
        yield running


def toml_config(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def desk(tmp_path: Path, desk_port: int) -> Iterator[Desk]:
    """Start the daemon as a process on ``desk_port``; ``relay_port`` makes outbound mail go through SMTP."""
    started: list[DaemonProcess] = []

    def start(relay_port: int | None = None, *, launch: bool = True, **sections: dict[str, Any]) -> DaemonProcess:
        config: dict[str, dict[str, Any]] = {
            "smtp": {"listen": f"127.0.0.1:{desk_port}", "hostname": DESK_HOSTNAME},
            "mail": {"addresses": [SUPPORT]},
            "storage": {"database": str(tmp_path / "db.sqlite3")},
            "inbox": {"poll_interval": 0.2},
            "outbound": {"maildir": str(tmp_path / "maildir"), "poll_interval": 0.2, "retry_delay": 1.0},
            "http": {"listen": "127.0.0.1:0"},
            "operators": {"addresses": [OPERATOR]},
        }
        if relay_port is not None:
            config["outbound"] |= {"transport": "smtp", "relay": f"127.0.0.1:{relay_port}",
                                   "relay_security": "auto"}
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        path = tmp_path / "mailticketd.toml"
        path.write_text(toml_config(config), encoding="utf-8")
        daemon = DaemonProcess(path, desk_port, tmp_path / "daemon.log")
        started.append(daemon)
        if launch:
            daemon.start()
        return daemon

    yield start
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.terminate()


# -- looking at what happened


def submit(port: int, mail_from: str, rcpt_to: str, raw: bytes) -> tuple[int, str]:
    """Hand one mail to an SMTP server with smtplib; return the reply to the data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.customer.example")
        code, reply = client.mail(mail_from)
        assert code == 250, (code, reply)
        code, reply = client.rcpt(rcpt_to)
        assert code == 250, (code, reply)
        code, reply = client.data(raw)
    return code, reply.decode()


def desk_json(daemon: DaemonProcess, *args: str) -> Any:
    """A listing of the daemon's CLI as JSON (``mailticketd --config X ARGS --json``)."""
    done = cli("--config", str(daemon.config), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def parsed(item: Received) -> EmailMessage:
    message = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def mails_for(sink: Sink, address: str, count: int, postfix: Postfix, timeout: float = 60) -> list[Received]:
    """Wait until the sink holds ``count`` mails for ``address``; return them."""
    def probe() -> list[Received] | None:
        found = [item for item in sink.received if address in item.rcpt_tos]
        return found if len(found) >= count else None

    return wait_for(probe, timeout=timeout, what=f"{count} mail(s) for {address} at the sink",
                    details=lambda: f"sink has {[(i.mail_from, i.rcpt_tos) for i in sink.received]}\n{postfix.log()}")


def passed_through_postfix(message: EmailMessage) -> bool:
    return any(f"by {HOSTNAME} (Postfix)" in str(value) for value in message.get_all("Received", []))


def inbox_count(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])


# -- Postfix in front and behind


def test_postfix_relays_a_customer_mail_to_the_desk_and_delivers_its_answers(
        postfix: Postfix, sink: Sink, desk: Desk) -> None:
    """A mail handed to Postfix for support@ reaches the daemon by the transport map, opens a ticket, and the acknowledgement and the operator notice leave through Postfix."""
    daemon = desk(relay_port=postfix.port)
    raw = make_mail(CUSTOMER, subject="de-fr-srv-0815 antwortet nicht", message_id="first@customer.example",
                    body="Hallo,\nde-fr-srv-0815 ist seit heute früh weg.\nGruß Anna")

    code, reply = submit(postfix.port, CUSTOMER, SUPPORT, raw)
    assert code == 250, reply
    postfix.wait_for_log(rf"to=<{re.escape(SUPPORT)}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{daemon.port},"
                         r".*status=sent \(250 2\.0\.0 Ok: queued as \d+\)")

    [ack] = mails_for(sink, CUSTOMER, 1, postfix)
    [notice] = mails_for(sink, OPERATOR, 1, postfix)
    tickets = desk_json(daemon, "tickets")
    assert [(t["number"], t["tag"], t["subject"]) for t in tickets] == [
        (10000, "[MH#10000]", "de-fr-srv-0815 antwortet nicht")], tickets
    [row] = desk_json(daemon, "inbox", "--all")
    assert (row["mail_from"], row["rcpt_tos"], row["ticket"]) == (CUSTOMER, [SUPPORT], 10000), row

    for item, recipient in ((ack, CUSTOMER), (notice, OPERATOR)):
        message = parsed(item)
        assert item.mail_from == SUPPORT and item.rcpt_tos == (recipient,)
        assert "[MH#10000]" in message["Subject"]
        assert passed_through_postfix(message), message.get_all("Received")
    ack_message = parsed(ack)
    assert ack_message["Subject"] == "[MH#10000] de-fr-srv-0815 antwortet nicht"
    assert ack_message["In-Reply-To"] == "<first@customer.example>"
    assert ack_message["Auto-Submitted"] == "auto-replied"
    wait_for(lambda: postfix.queue() == [], timeout=30, what="an empty Postfix queue", details=postfix.log)


def test_postfix_keeps_mail_the_desk_defers_with_451_and_delivers_it_once(
        postfix: Postfix, sink: Sink, desk: Desk, tmp_path: Path) -> None:
    """While the daemon answers 451 4.3.0 (its database is locked), Postfix keeps the mail queued; after the lock is gone a flush delivers it exactly once."""
    daemon = desk(relay_port=postfix.port, storage={"busy_timeout": 0.3})
    database = tmp_path / "db.sqlite3"
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        code, reply = submit(postfix.port, CUSTOMER, SUPPORT, make_mail(CUSTOMER, subject="Bitte prüfen"))
        assert code == 250, reply
        postfix.wait_for_log(rf"to=<{re.escape(SUPPORT)}>.*status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                             r"said: 451 4\.3\.0")
        [queued] = postfix.queue()
        assert queued["queue_name"] in ("deferred", "active"), queued
        assert inbox_count(database) == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    postfix.flush()
    postfix.wait_for_log(rf"to=<{re.escape(SUPPORT)}>.*status=sent \(250 2\.0\.0 Ok: queued as")
    mails_for(sink, CUSTOMER, 1, postfix)
    wait_for(lambda: postfix.queue() == [], timeout=30, what="an empty Postfix queue", details=postfix.log)
    postfix.flush()  # nothing left to send twice
    [ticket] = desk_json(daemon, "tickets")
    assert ticket["subject"] == "Bitte prüfen"
    assert inbox_count(database) == 1
    assert len([item for item in sink.received if CUSTOMER in item.rcpt_tos]) == 1
    handed_over = re.findall(rf"to=<{re.escape(SUPPORT)}>.*status=sent", postfix.log())
    assert len(handed_over) == 1, postfix.log()


def test_postfix_queues_mail_while_the_desk_is_down_and_delivers_it_after_the_start(
        postfix: Postfix, sink: Sink, desk: Desk, tmp_path: Path) -> None:
    """Mail Postfix accepted while the daemon was stopped waits in its queue and arrives once the daemon runs."""
    daemon = desk(relay_port=postfix.port, launch=False)
    code, reply = submit(postfix.port, CUSTOMER, SUPPORT, make_mail(CUSTOMER, subject="Nachts angekommen"))
    assert code == 250, reply
    postfix.wait_for_log(rf"to=<{re.escape(SUPPORT)}>.*status=deferred \(connect to 127\.0\.0\.1"
                         rf"\[127\.0\.0\.1\]:{daemon.port}: Connection refused\)")
    assert [item["queue_name"] for item in postfix.queue()] in (["deferred"], ["active"])

    daemon.start()
    postfix.flush()
    mails_for(sink, CUSTOMER, 1, postfix)
    wait_for(lambda: postfix.queue() == [], timeout=30, what="an empty Postfix queue", details=postfix.log)
    assert [t["subject"] for t in desk_json(daemon, "tickets")] == ["Nachts angekommen"]
    assert inbox_count(tmp_path / "db.sqlite3") == 1


def test_postfix_bounces_mail_the_desk_refuses_with_550_to_the_sender(
        postfix: Postfix, sink: Sink, desk: Desk, tmp_path: Path) -> None:
    """Mail for an address the daemon does not serve gets 550 5.1.1 from it, and Postfix returns a delivery-status bounce from MAILER-DAEMON to the envelope sender."""
    daemon = desk(relay_port=postfix.port)
    raw = make_mail(CUSTOMER, to="nobody@example.net", subject="An wen?", message_id="lost@customer.example")
    code, reply = submit(postfix.port, CUSTOMER, "nobody@example.net", raw)
    assert code == 250, reply

    [bounce] = mails_for(sink, CUSTOMER, 1, postfix)
    message = parsed(bounce)
    assert bounce.mail_from in ("", "<>")  # the null return path: nobody answers a bounce
    assert "MAILER-DAEMON" in str(message["From"])
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    text = bounce.raw.decode("utf-8", "replace")
    assert "Status: 5.1.1" in text
    assert "Final-Recipient: rfc822; nobody@example.net" in text
    assert re.search(r"Diagnostic-Code: smtp; 550 5\.1\.1", text), text
    assert inbox_count(tmp_path / "db.sqlite3") == 0
    assert desk_json(daemon, "tickets") == []


def test_documented_recipient_map_refuses_unknown_addresses_at_rcpt_and_passes_subaddresses(
        tmp_path: Path, sink: Sink, desk: Desk, desk_port: int) -> None:
    """With docs/mta.md's relay_recipient_maps and recipient_delimiter, Postfix refuses unknown support-domain addresses itself with 550 5.1.1 and relays support+token@ to the daemon."""
    settings = {"relay_recipient_maps": f"inline:{{ {SUPPORT}=ok }}", "recipient_delimiter": "+"}
    routes = {"example.net": desk_port, "customer.example": sink.port, "provider.example": sink.port}
    with Postfix(routes, settings=settings, keep_log=tmp_path / "postfix.log") as postfix:
        daemon = desk(relay_port=postfix.port)
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
            client.ehlo("client.customer.example")
            client.mail(CUSTOMER)
            code, refusal = client.rcpt("nobody@example.net")
        assert (code, refusal.split()[0]) == (550, b"5.1.1"), refusal
        assert b"User unknown in relay recipient table" in refusal  # Postfix's own answer, not the daemon's

        subaddress = "support+t1.abcdefghijklmnop@example.net"
        code, reply = submit(postfix.port, CUSTOMER, subaddress, make_mail(CUSTOMER, to=subaddress, subject="Hallo"))
        assert code == 250, reply
        mails_for(sink, CUSTOMER, 1, postfix)
        [row] = desk_json(daemon, "inbox", "--all")
        assert row["rcpt_tos"] == [subaddress]


def documented_setting(name: str) -> str:
    """The value docs/mta.md gives ``name`` in its Postfix main.cf snippet."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "mta.md").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(name)} = (.+)$", docs, re.MULTILINE)
    assert found is not None, f"docs/mta.md sets no {name}"
    return found.group(1)


def test_documented_header_check_strips_forged_authentication_results(
        tmp_path: Path, sink: Sink, desk: Desk, desk_port: int) -> None:
    """With docs/mta.md's header_checks, a sender's Authentication-Results in the name of mx.example.net (plain, folded, upper-case) never reach the daemon; another host's header does."""
    settings = {"header_checks": documented_setting("header_checks")}
    routes = {"example.net": desk_port, "customer.example": sink.port, "provider.example": sink.port}
    with Postfix(routes, settings=settings, keep_log=tmp_path / "postfix.log") as postfix:
        desk(relay_port=postfix.port, operators={"addresses": [OPERATOR], "authserv_id": "mx.example.net"})
        forged = ("Authentication-Results: mx.example.net; dmarc=pass header.from=customer.example\r\n"
                  "Authentication-Results:\r\n MX.Example.NET 1;\r\n dmarc=pass header.from=customer.example\r\n"
                  "Authentication-Results: other.example; spf=pass smtp.mailfrom=customer.example\r\n").encode()
        code, reply = submit(postfix.port, CUSTOMER, SUPPORT, forged + make_mail(CUSTOMER, subject="Gefälscht"))
        assert code == 250, reply
        mails_for(sink, CUSTOMER, 1, postfix)
        with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
            (raw,) = conn.execute("SELECT raw FROM inbox_raw").fetchone()
        headers = bytes(raw).split(b"\r\n\r\n", 1)[0].lower()
        assert b"mx.example.net" not in headers, headers
        assert b"authentication-results: other.example; spf=pass" in headers, headers


@pytest.mark.parametrize("security", ["none", "auto"])
def test_answers_pass_a_postfix_with_a_self_signed_certificate(
        tmp_path: Path, sink: Sink, desk: Desk, desk_port: int, security: str) -> None:
    """With relay_security "none" or "auto" the daemon's answers pass a Postfix that offers STARTTLS with a self-signed certificate (Debian's default); "auto" encrypts without checking it."""
    routes = {"example.net": desk_port, "customer.example": sink.port, "provider.example": sink.port}
    with Postfix(routes, self_signed_tls=True, keep_log=tmp_path / "postfix.log") as postfix:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
            client.ehlo("client.customer.example")
            assert client.has_extn("starttls")
        desk(relay_port=postfix.port, outbound={"relay_security": security})
        code, reply = submit(postfix.port, CUSTOMER, SUPPORT, make_mail(CUSTOMER, subject="Zertifikat"))
        assert code == 250, reply
        [ack] = mails_for(sink, CUSTOMER, 1, postfix)
        message = parsed(ack)
        assert passed_through_postfix(message)
        received = " ".join(str(value) for value in message.get_all("Received", []))
        assert ("with ESMTPS" in received) == (security == "auto"), received  # ESMTPS: over TLS


# -- swaks as the SMTP client


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command("swaks"), "--server", f"127.0.0.1:{port}", "--timeout", "30",
                           "--helo", "client.customer.example", *args],
                          capture_output=True, text=True, timeout=60)


def test_swaks_delivers_a_mail_the_desk_queues(desk: Desk) -> None:
    """swaks speaking SMTP to the daemon gets 250 2.0.0 Ok: queued and exits 0, and the mail opens a ticket."""
    daemon = desk()
    done = swaks(daemon.port, "--to", SUPPORT, "--from", CUSTOMER,
                 "--header", "Subject: de-fr-srv-0815 antwortet nicht", "--body", "Hallo, die VM ist weg.")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"<-  250 2\.0\.0 Ok: queued as \d+", done.stdout), done.stdout
    ticket = wait_for(lambda: desk_json(daemon, "tickets"), timeout=60, what="a ticket")
    assert [t["subject"] for t in ticket] == ["de-fr-srv-0815 antwortet nicht"]


def test_swaks_to_an_unknown_address_is_refused_with_550(desk: Desk) -> None:
    """swaks sending to an address that is not a support address gets 550 5.1.1 at RCPT and exits non-zero."""
    daemon = desk()
    done = swaks(daemon.port, "--to", "nobody@example.net", "--from", CUSTOMER)
    assert done.returncode != 0, done.stdout
    assert re.search(r"<\*\* +550 5\.1\.1", done.stdout), done.stdout


def test_swaks_with_a_body_over_the_size_limit_is_refused_with_552(desk: Desk, tmp_path: Path) -> None:
    """swaks sending a mail larger than [smtp] max_message_size gets 552 5.3.4 and exits non-zero."""
    daemon = desk(smtp={"max_message_size": 2000})
    done = swaks(daemon.port, "--to", SUPPORT, "--from", CUSTOMER, "--header", "Subject: Logs",
                 "--body", "eine lange Zeile Log\n" * 250)
    assert done.returncode != 0, done.stdout
    assert re.search(r"<\*\* +552 5\.3\.4", done.stdout), done.stdout
    assert inbox_count(tmp_path / "db.sqlite3") == 0
