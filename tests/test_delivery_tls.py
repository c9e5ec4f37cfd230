"""The SMTP relay over TLS: implicit TLS and STARTTLS, with and without a certificate the daemon trusts."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from mailticketd.outbox.transports import TemporaryFailure
from mailticketd.outbox.transports.smtp import SmtpTransport
from tests.helpers import make_mail
from tests.sink import Sink


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context, and a client context that trusts it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_implicit_tls_delivers_over_tls(certificate: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """relay_security "tls" talks TLS from the first byte to a relay whose certificate it trusts."""
    server, client = certificate
    async with Sink(tls=server, implicit_tls=True) as sink:
        await SmtpTransport(sink.host, sink.port, security="tls", tls_context=client).send(
            "support@example.net", "anna@customer.example", make_mail())
    assert sink.sessions_over_tls == [True]


async def test_required_starttls_delivers_over_tls(certificate: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """relay_security "starttls" upgrades the session before sending the mail."""
    server, client = certificate
    async with Sink(tls=server) as sink:
        await SmtpTransport(sink.host, sink.port, security="starttls", tls_context=client).send(
            "support@example.net", "anna@customer.example", make_mail())
    assert sink.sessions_over_tls == [True]


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_untrusted_certificate_is_a_temporary_failure_and_nothing_is_sent(
        certificate: tuple[ssl.SSLContext, ssl.SSLContext], security: str) -> None:
    """A relay whose certificate does not verify gets no mail, and the mail stays queued for a retry."""
    server, _ = certificate
    async with Sink(tls=server, implicit_tls=security == "tls") as sink:
        with pytest.raises(TemporaryFailure, match="TLS|certificate|relay"):
            await SmtpTransport(sink.host, sink.port, security=security).send(
                "support@example.net", "anna@customer.example", make_mail())
    assert sink.received == []


async def test_auto_encrypts_with_a_self_signed_certificate(certificate: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """relay_security "auto" takes the STARTTLS offer of a relay with a self-signed certificate."""
    server, _ = certificate
    async with Sink(tls=server) as sink:
        await SmtpTransport(sink.host, sink.port, security="auto").send(
            "support@example.net", "anna@customer.example", make_mail())
    assert sink.sessions_over_tls == [True]
