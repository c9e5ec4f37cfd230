"""Operations: health and metrics, the admin commands, signals, systemd notification, upgrades."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
from pathlib import Path

import aiohttp
import pytest

from mailticketd.app import Daemon
from tests.helpers import SUPPORT, free_port, make_config, make_mail, send, settle
from tests.process import ROOT, DaemonProcess, cli, write_config
from tests.sink import Sink


async def get(daemon: Daemon, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{daemon.http_port}{path}") as response:
            return response.status, await response.text()


async def test_healthz_is_200_with_what_it_checked(daemon: Daemon) -> None:
    """A well daemon answers /healthz with 200 and JSON saying the database and both queues are fine."""
    status, body = await get(daemon, "/healthz")
    report = json.loads(body)
    assert status == 200
    assert report["ok"] is True and report["database"]["ok"] is True and report["database"]["reachable"] is True
    assert report["inbox"]["ok"] and report["outbox"]["ok"]


async def test_healthz_is_503_when_outgoing_mail_is_stuck(tmp_path: Path) -> None:
    """Mail that cannot leave for longer than ``stuck_after`` makes /healthz answer 503 naming the outbox."""
    config = make_config(tmp_path, health={"stuck_after": 0.3},
                         outbound={"transport": "smtp", "relay": f"127.0.0.1:{free_port()}",
                                   "relay_security": "none", "retry_delay": 0.05, "max_retry_delay": 0.1})
    async with Daemon(config) as daemon:
        await send(daemon.smtp_port, make_mail())
        await settle(daemon)
        await asyncio.sleep(0.8)
        status, body = await get(daemon, "/healthz")
    report = json.loads(body)
    assert status == 503
    assert report["ok"] is False and report["outbox"]["ok"] is False and report["inbox"]["ok"] is True
    assert report["outbox"]["queued"] == 2 and report["outbox"]["oldest_waiting_seconds"] > 0.3


async def test_metrics_count_what_happened(daemon: Daemon) -> None:
    """/metrics in Prometheus format counts accepted and refused mail, processing, queues and latency."""
    await send(daemon.smtp_port, make_mail())
    await settle(daemon)
    try:
        await send(daemon.smtp_port, make_mail(), rcpt=["stranger@elsewhere.example"])
    except Exception:
        pass  # the 550 is what is counted
    status, text = await get(daemon, "/metrics")
    assert status == 200
    lines = set(text.splitlines())
    assert "mailticketd_smtp_accepted_total 1.0" in lines
    assert 'mailticketd_smtp_refused_total{code="550"} 1.0' in lines
    assert 'mailticketd_mails_processed_total{decision="new"} 1.0' in lines
    assert "mailticketd_processing_latency_seconds_count 1.0" in lines
    assert "mailticketd_inbox_backlog 0.0" in lines
    assert any(line.startswith("mailticketd_outbox_queued ") for line in lines)


def test_check_config_passes_a_good_file_and_names_the_fault_of_a_bad_one(tmp_path: Path) -> None:
    """``check-config`` exits 0 on the example config, 2 with the reason on a broken template or key."""
    good = cli("--config", str(ROOT / "config" / "mailticketd.toml"), "check-config")
    assert good.returncode == 0 and "config OK" in good.stdout
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "de" / "ack.txt").write_text("{% block subject %}{{ ticket.subject {% endblock %}", encoding="utf-8")
    path = tmp_path / "site.toml"
    path.write_text(f'[mail]\ntemplates = "{templates}"\n', encoding="utf-8")
    broken = cli("--config", str(path), "check-config")
    assert broken.returncode == 2 and "de/ack.txt" in broken.stderr
    path.write_text("[mail]\ntag_prefix = 5\n", encoding="utf-8")
    wrong = cli("--config", str(path), "check-config")
    assert wrong.returncode == 2 and "[mail] tag_prefix: expected a string, got 5" in wrong.stderr


async def test_send_test_goes_through_the_configured_relay(tmp_path: Path) -> None:
    """``send-test ADDR`` hands one mail to the relay; with the relay down it fails with the reason."""
    async with Sink() as sink:
        path = tmp_path / "relay.toml"
        path.write_text(f'[outbound]\ntransport = "smtp"\nrelay = "{sink.relay}"\nrelay_security = "none"\n'
                        f'[storage]\ndatabase = "{tmp_path / "db.sqlite3"}"\n', encoding="utf-8")
        result = await asyncio.to_thread(cli, "--config", str(path), "send-test", "admin@provider.example")
        assert result.returncode == 0, result.stderr
        assert [item.rcpt_tos for item in sink.received] == [("admin@provider.example",)]
        assert b"Testmail von mailticketd" in sink.received[0].raw
    down = await asyncio.to_thread(cli, "--config", str(path), "send-test", "admin@provider.example")
    assert down.returncode == 1 and "refused" in down.stderr


async def test_backup_is_a_consistent_copy_while_the_daemon_runs(tmp_path: Path) -> None:
    """``backup FILE`` copies the live database (tickets included); an existing FILE needs --force."""
    config, port = write_config(tmp_path)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        await asyncio.to_thread(_smtp_send, port, make_mail(subject="Gesichert"))
        daemon.wait_for_event("mail.processed")
        target = tmp_path / "backup" / "copy.sqlite3"
        made = cli("--config", str(config), "backup", str(target), "--json")
        assert made.returncode == 0, made.stderr
        again = cli("--config", str(config), "backup", str(target))
        assert again.returncode == 1 and "add --force" in again.stderr
    finally:
        daemon.terminate()
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT subject FROM tickets").fetchall() == [("Gesichert",)]


def test_a_newer_database_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """A database written by a newer mailticketd stops start-up and the CLI with its version in the message."""
    config, _ = write_config(tmp_path)
    assert cli("--config", str(config), "migrate").returncode == 0  # creates and migrates
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")
    for command in (["tickets"], ["serve"], ["migrate"]):
        result = cli("--config", str(config), *command)
        assert result.returncode == 1
        assert "database schema version 99 is newer than this mailticketd knows" in result.stderr


def test_concurrent_first_starts_migrate_once(tmp_path: Path) -> None:
    """Several processes opening a new database at once migrate it under the lock, once, without errors."""
    config, _ = write_config(tmp_path)
    import sys
    processes = [subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "migrate", "--json"],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], results
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name = 'tickets'")]
    assert version >= 3 and tables == ["tickets"]


def test_status_shows_health_and_the_running_daemons_counters(tmp_path: Path) -> None:
    """``status`` prints the health and the daemon's counters; ``--json`` gives both to scripts."""
    http_port = free_port()
    config, port = write_config(tmp_path, http_port=http_port)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        _smtp_send(port, make_mail())
        daemon.wait_for_event("mail.processed")
        text = cli("--config", str(config), "status")
        report = json.loads(cli("--config", str(config), "status", "--json").stdout)
    finally:
        daemon.terminate()
    assert text.returncode == 0, text.stderr
    assert "health: OK" in text.stdout and "mailticketd_smtp_accepted_total 1" in text.stdout
    assert report["ok"] is True and report["daemon"]["reachable"] is True and report["state"] == "ok"
    assert report["daemon"]["counters"]["mailticketd_smtp_accepted_total"] == 1.0
    stopped = cli("--config", str(config), "status")
    assert stopped.returncode == 2, stopped.stdout  # Nagios CRITICAL: a monitoring check sees the daemon down
    assert stopped.stdout.startswith("health: CRITICAL: daemon not reachable")
    assert "daemon: not reachable" in stopped.stdout


def test_sigterm_lets_an_open_session_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    """After SIGTERM a session in the middle of a transaction still gets its 250; new connections do not get in."""
    config, port = write_config(tmp_path)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo()
    client.mail("anna@customer.example")
    client.rcpt(SUPPORT)
    daemon.signal(signal.SIGTERM)
    daemon.wait_for_event("daemon.stopping")
    with pytest.raises(OSError):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            if not probe.recv(100).startswith(b"421"):
                raise AssertionError("a new session was accepted while stopping")
            raise OSError("421")
    code, reply = client.data(make_mail())
    client.quit()
    assert code == 250 and reply.startswith(b"2.0.0")
    assert daemon.process is not None and daemon.process.wait(timeout=30) == 0
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT status FROM inbox").fetchall() == [("done",)]


def test_sighup_reloads_the_config_without_dropping_a_session_and_refuses_a_bad_one(tmp_path: Path) -> None:
    """SIGHUP applies a new support address while a session stays open; a broken file is refused and logged."""
    config, port = write_config(tmp_path)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo()
        client.mail("anna@customer.example")
        assert client.rcpt(SUPPORT)[0] == 250  # a transaction is open across the reload
        write_config(tmp_path, addresses=(SUPPORT, "billing@example.net"))
        _keep_port(config, port)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_event("daemon.reloaded")
        assert client.rcpt("billing@example.net")[0] == 250
        code, _ = client.data(make_mail(to="billing@example.net"))
        assert code == 250
        client.quit()

        config.write_text(config.read_text() + "\n[database]\npath = 1\n", encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        [refused] = daemon.wait_for_event("daemon.reload_refused")
        assert "[database]: unknown section" in str(refused["error"])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as again:
            again.ehlo()
            again.mail("anna@customer.example")
            assert again.rcpt("billing@example.net")[0] == 250  # the old (reloaded) config stays
    finally:
        assert daemon.terminate() == 0


def test_systemd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    """Under Type=notify the daemon says READY=1 once listening, WATCHDOG=1 as asked, and STOPPING=1 on SIGTERM."""
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(30)
    config, port = write_config(tmp_path)
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log",
                           env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    daemon.start()
    messages: list[str] = []
    try:
        while "READY=1" not in messages or messages.count("WATCHDOG=1") < 2:
            messages.append(listener.recv(4096).decode())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            assert probe.recv(100).startswith(b"220")  # READY came after the listener was up
    finally:
        daemon.terminate()
    while "STOPPING=1" not in messages:
        messages.append(listener.recv(4096).decode())
    listener.close()
    assert messages.index("READY=1") < messages.index("STOPPING=1")


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts mailticketd.service (with ExecStart pointing at this checkout's venv)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: `make test` installs the systemd package")
    text = (ROOT / "mailticketd.service").read_text(encoding="utf-8")
    for option in ("Type=notify", "StateDirectory=mailticketd", "ProtectSystem=strict", "NoNewPrivileges=yes",
                   "PrivateTmp=yes", "RestrictAddressFamilies=", "/etc/mailticketd/mailticketd.toml"):
        assert option in text
    unit = tmp_path / "mailticketd.service"
    unit.write_text(text.replace("/opt/mailticketd/venv/bin/mailticketd", str(ROOT / ".venv" / "bin" / "mailticketd")),
                    encoding="utf-8")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mailticketd.service" not in result.stderr, result.stderr


def _smtp_send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("anna@customer.example", [SUPPORT], raw)


def _keep_port(config: Path, port: int) -> None:
    """write_config picks a new SMTP port; a reload keeps the listener, so the file must name the old one."""
    lines = config.read_text(encoding="utf-8").splitlines()
    lines[1] = f'listen = "127.0.0.1:{port}"'
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_one_slow_recipient_does_not_make_the_desk_unhealthy(tmp_path: Path) -> None:
    """A recipient whose server keeps deferring does not turn /healthz to 503 while other mail leaves."""
    async with Sink() as sink:
        sink.refuse["anna@customer.example"] = "451 4.7.1 Greylisted, try again later"
        config = make_config(tmp_path, health={"stuck_after": 0.3},
                             outbound={"transport": "smtp", "relay": sink.relay, "relay_security": "none",
                                       "retry_delay": 30.0, "poll_interval": 0.1})
        async with Daemon(config) as daemon:
            await send(daemon.smtp_port, make_mail("anna@customer.example"))
            await settle(daemon)
            await asyncio.sleep(0.6)
            await send(daemon.smtp_port, make_mail("bob@customer.example"))  # mail to others still leaves
            await settle(daemon)
            await asyncio.sleep(0.3)
            status, body = await get(daemon, "/healthz")
    report = json.loads(body)
    assert status == 200, report
    assert report["outbox"]["queued"] == 1 and report["outbox"]["oldest_waiting_seconds"] > 0.3
