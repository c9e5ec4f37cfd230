"""STARTTLS on the inbound side: offered with a configured certificate, optionally required before MAIL."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiosmtplib
import pytest

from mailticketd.app import Daemon
from mailticketd.config import ConfigError
from tests.helpers import SUPPORT, make_config, make_mail, settle


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made by openssl."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def test_starttls_is_offered_and_a_mail_arrives_encrypted(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """With a certificate configured, EHLO offers STARTTLS and a verifying TLS client delivers over it."""
    cert, key = certificate
    config = make_config(tmp_path, smtp={"tls_certificate": str(cert), "tls_key": str(key)})
    async with Daemon(config) as daemon:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, start_tls=False,
                                 tls_context=_trusting(cert))
        async with client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            assert client.get_transport_info("sslcontext") is not None
            peer_cert = client.get_transport_info("peercert")
            assert peer_cert and ("commonName", "127.0.0.1") in peer_cert["subject"][0]
            errors, reply = await client.sendmail("kunde@customer.example", [SUPPORT], make_mail(subject="über TLS"))
        assert not errors and reply.startswith("2.0.0")
        await settle(daemon)
        async with daemon.db.read() as store:
            assert [ticket.subject for ticket in await store.tickets.list()] == ["über TLS"]


async def test_required_tls_refuses_mail_before_starttls_with_530(tmp_path: Path,
                                                                  certificate: tuple[Path, Path]) -> None:
    """With ``require_tls``, MAIL before STARTTLS gets 530 5.7.0 and the same client succeeds after it."""
    cert, key = certificate
    config = make_config(tmp_path, smtp={"tls_certificate": str(cert), "tls_key": str(key), "require_tls": True})
    async with Daemon(config) as daemon:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, start_tls=False) as plain:
            await plain.ehlo()
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
                await plain.mail("kunde@customer.example")
        assert refused.value.code == 530
        assert refused.value.message.startswith("5.7.0")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.smtp_port, start_tls=True,
                                   tls_context=_trusting(cert)) as secure:
            errors, reply = await secure.sendmail("kunde@customer.example", [SUPPORT], make_mail())
        assert not errors and reply.startswith("2.0.0")


def test_openssl_s_client_delivers_with_starttls(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """``openssl s_client -starttls smtp``, a TLS client outside Python, verifies us and gets its 250 over TLS."""
    import asyncio

    cert, key = certificate
    config = make_config(tmp_path, smtp={"tls_certificate": str(cert), "tls_key": str(key), "require_tls": True})
    script = ("EHLO client.example\nMAIL FROM:<kunde@customer.example>\nRCPT TO:<support@example.net>\nDATA\n"
              "From: kunde@customer.example\nSubject: openssl\n\nHallo\n.\nQUIT\n")

    async def run() -> tuple[int, str]:
        async with Daemon(config) as daemon:
            process = await asyncio.create_subprocess_exec(
                "openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{daemon.smtp_port}",
                "-CAfile", str(cert), "-verify_return_error", "-crlf", "-ign_eof",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            output, _ = await asyncio.wait_for(process.communicate(script.encode()), 60)
            return process.returncode or 0, output.decode(errors="replace")

    code, output = asyncio.run(run())
    assert code == 0, output
    assert "Verify return code: 0 (ok)" in output
    assert "250 2.0.0 Ok: queued" in output


def test_required_tls_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    """``require_tls`` without a certificate stops start-up with an error naming the key."""
    with pytest.raises(ConfigError, match=r"\[smtp\] require_tls"):
        make_config(tmp_path, smtp={"require_tls": True})


async def test_an_unreadable_certificate_stops_the_start(tmp_path: Path) -> None:
    """A certificate file that cannot be loaded is named at start, not found out by the first client."""
    (tmp_path / "bad.pem").write_text("not a certificate")
    config = make_config(tmp_path, smtp={"tls_certificate": str(tmp_path / "bad.pem"),
                                         "tls_key": str(tmp_path / "bad.pem")})
    with pytest.raises(ConfigError, match=r"\[smtp\] tls_certificate"):
        async with Daemon(config):
            pass
