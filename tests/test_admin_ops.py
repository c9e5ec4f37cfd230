"""What an admin meets around the daemon: one daemon per database, failed starts, status as a monitoring check,
reloading the log level, and the checks of check-config and send-test."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import SUPPORT, free_port, make_mail
from tests.process import ROOT, DaemonProcess, cli, write_config


def _send(port: int, raw: bytes, sender: str = "anna@customer.example") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(sender, [SUPPORT], raw)


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_second_daemon_on_the_same_database_refuses_to_start_while_the_cli_works(tmp_path: Path) -> None:
    """A second ``serve`` on the same SQLite file exits 1 naming the first one's pid; CLI commands keep working."""
    config, port = write_config(tmp_path)
    first = DaemonProcess(config, port, tmp_path / "first.log")
    first.start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        second_config, second_port = write_config(other)  # other ports, but the first daemon's database
        text = second_config.read_text(encoding="utf-8").replace(str(other / "db.sqlite3"),
                                                                 str(tmp_path / "db.sqlite3"))
        second_config.write_text(text, encoding="utf-8")
        second = subprocess.run([sys.executable, "-m", "mailticketd", "--config", str(second_config), "serve"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert first.process is not None
        assert (f"another mailticketd (pid {first.process.pid}) already serves the database "
                f"{tmp_path / 'db.sqlite3'}") in second.stderr
        assert _port_is_free(second_port)
        _send(port, make_mail(message_id="once@customer.example"))
        first.wait_for_event("mail.processed")
        listed = cli("--config", str(second_config), "tickets", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [row["subject"] for row in json.loads(listed.stdout)] == ["Server down"]
    finally:
        assert first.terminate() == 0
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'ack'").fetchone() == (1,)
    again = DaemonProcess(config, port, tmp_path / "again.log")  # the lock goes with the daemon
    again.start()
    assert again.terminate() == 0


def test_a_start_that_fails_after_listening_closes_the_ports_and_exits_non_zero(tmp_path: Path) -> None:
    """With an unreachable NOTIFY_SOCKET the daemon says why, frees its SMTP and HTTP ports and exits 1."""
    http_port = free_port()
    config, port = write_config(tmp_path, http_port=http_port)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(tmp_path / "no-such.sock")})
    assert result.returncode == 1, result.stderr
    assert "cannot notify systemd at NOTIFY_SOCKET=" in result.stderr
    assert time.monotonic() - started < 50
    assert _port_is_free(port) and _port_is_free(http_port)
    assert not (tmp_path / "db.sqlite3.lock").read_text()  # the lock was given up


def test_status_exit_codes_follow_nagios(tmp_path: Path) -> None:
    """``status`` exits 0 when well, 1 (WARNING) for a failed mail waiting for an operator, 2 (CRITICAL) when the
    daemon is down or there is no database."""
    http_port = free_port()
    config, port = write_config(tmp_path, http_port=http_port)
    missing = cli("--config", str(config), "status", "--json")
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["state"] == "critical" and not (tmp_path / "db.sqlite3").exists()
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        assert cli("--config", str(config), "status").returncode == 0
        with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
            conn.execute("INSERT INTO inbox (received_at, mail_from, rcpt_tos, size, status, reason, attempts) "
                         "VALUES ('2026-01-01T00:00:00+00:00', 'a@b.example', '[]', 1, 'failed', 'x', 3)")
            conn.execute("INSERT INTO inbox_raw (inbox_id, raw) VALUES (last_insert_rowid(), x'00')")
        warned = cli("--config", str(config), "status")
        assert warned.returncode == 1, warned.stdout
        assert warned.stdout.startswith("health: WARNING: 1 failed inbox mails")
    finally:
        daemon.terminate()
    assert cli("--config", str(config), "status").returncode == 2


def test_sighup_applies_a_changed_log_level(tmp_path: Path) -> None:
    """With ``[log] level = "warning"`` a processed mail is not logged; after SIGHUP with "info" the next one is."""
    config, port = write_config(tmp_path, '\n[log]\nformat = "json"\nlevel = "warning"\n')
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        _send(port, make_mail(message_id="quiet@customer.example"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
                if conn.execute("SELECT count(*) FROM inbox WHERE status = 'done'").fetchone()[0]:
                    break
            time.sleep(0.1)
        assert [e for e in daemon.events() if e.get("event") == "mail.processed"] == []
        config.write_text(config.read_text(encoding="utf-8").replace('level = "warning"', 'level = "info"'),
                          encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        [reloaded] = daemon.wait_for_event("daemon.reloaded")
        assert reloaded["log_level"] == "info"
        _send(port, make_mail(message_id="heard@customer.example"))
        [processed] = daemon.wait_for_event("mail.processed")
        assert processed["message_id"] == "heard@customer.example"
    finally:
        assert daemon.terminate() == 0


def test_check_config_production_names_every_development_value(tmp_path: Path) -> None:
    """The example config passes with its development values listed; ``--production`` refuses them, and a real
    site's values pass."""
    example = str(ROOT / "config" / "mailticketd.toml")
    plain = cli("--config", example, "check-config")
    assert plain.returncode == 0 and "development values" in plain.stdout
    strict = cli("check-config", "--production", "--config", example)
    assert strict.returncode == 1
    for key in ("[mail] addresses", "[smtp] hostname", "[http] base_url", "[operators] addresses",
                "[outbound] transport"):
        assert f"  {key}: " in strict.stdout, key
    site = tmp_path / "site.toml"
    site.write_text('[smtp]\nhostname = "mx1.provider.example.net"\n[mail]\naddresses = ["support@provider.de"]\n'
                    '[http]\nbase_url = "https://desk.provider.de"\n[operators]\naddresses = ["op@provider.de"]\n'
                    '[outbound]\ntransport = "smtp"\nrelay = "127.0.0.1:25"\n', encoding="utf-8")
    ready = cli("--config", str(site), "check-config", "--production")
    assert ready.returncode == 0, ready.stdout
    assert "development values" not in ready.stdout and "not for production" not in ready.stdout


def test_send_test_refuses_a_bad_address_and_the_desks_own(tmp_path: Path) -> None:
    """``send-test`` exits 2 without sending for a malformed address and for the desk's own address."""
    config, _ = write_config(tmp_path)
    for address, says in (("not-an-address", "is not an e-mail address"), ("a@b@c.example", "is not an e-mail"),
                          ("Support@Example.NET", "the desk's own address"),
                          ("support+abc@example.net", "the desk's own address")):
        result = cli("--config", str(config), "send-test", address)
        assert result.returncode == 2 and says in result.stderr, (address, result.stderr)
    assert not (tmp_path / "maildir").exists()


def test_the_test_set_up_leaves_no_system_postfix_on_port_25() -> None:
    """After ``make test``'s set-up (Postfix installed), nothing listens on port 25: the tests use private instances."""
    if not Path("/usr/sbin/postfix").exists():
        pytest.skip("no Postfix installed here: nothing that could listen")
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as probe:
            probe.settimeout(2)
            try:
                assert probe.connect_ex((host, 25)) != 0, f"something listens on {host} port 25"
            except OSError:
                pass  # no IPv6 here
