"""Commands for admins: ``serve``, ``migrate``, ``status``, ``check-config``, ``send-test``, ``backup``."""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mailticketd.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, CommandError, Handler, emit
from mailticketd.cli.ownership import hand_over
from mailticketd.cli.production import production_warnings
from mailticketd.clock import iso, utc_now
from mailticketd.config import Config, config_path
from mailticketd.storage import Database, SchemaTooNew, database_for
from mailticketd.storage.daemons import DaemonRepository

# Nagios plugin exit codes: `status` doubles as a monitoring check.
STATUS_OK, STATUS_WARNING, STATUS_CRITICAL = 0, 1, 2
_STATE_NAMES = {STATUS_OK: "OK", STATUS_WARNING: "WARNING", STATUS_CRITICAL: "CRITICAL"}
_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;.]+$")


def add_parsers(commands: Any, json_flag: argparse.ArgumentParser) -> dict[tuple[str, str | None], Handler]:
    commands.add_parser("serve", help="run the daemon (creates the database if there is none)")
    commands.add_parser("migrate", parents=[json_flag],
                        help="create the database if there is none and bring its schema up to date")
    check = commands.add_parser("check-config", help="check the config file and the templates; non-zero on a fault")
    check.add_argument("--production", action="store_true",
                       help="also refuse development values (localhost addresses, a loopback base_url, no "
                            "operators, the maildir transport)")
    send_test = commands.add_parser("send-test", help="send one test mail through the configured transport")
    send_test.add_argument("address", help="the recipient (not one of the desk's own addresses)")
    commands.add_parser("status", parents=[json_flag],
                        help="health and counters, as /healthz and /metrics; Nagios exit codes 0 OK, "
                             "1 WARNING, 2 CRITICAL")
    backup = commands.add_parser("backup", parents=[json_flag], help="a consistent copy of the live database")
    backup.add_argument("file", type=Path)
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    return {("backup", None): _backup}


def run_standalone(args: argparse.Namespace, config: Config) -> int | None:
    """The commands that open (or create) the database their own way; None for any other command."""
    if args.command == "serve":
        return _serve(config, config_path(args.config))
    if args.command == "check-config":
        return _check_config(config, args.production)
    if args.command == "send-test":
        return _send_test(config, args.address)
    if args.command == "migrate":
        return _migrate(args, config)
    if args.command == "status":
        return _status(args, config)
    if args.command == "backup" and config.storage.shared:
        return _pg_dump_advice(args, config)
    return None


def _pg_dump_advice(args: argparse.Namespace, config: Config) -> int:
    """PostgreSQL is backed up with its own tool: the exact command for the configured database; exit 1."""
    password = ""
    if config.storage.password_file is not None:
        password = f"PGPASSWORD=\"$(head -n 1 {shlex.quote(str(config.storage.password_file))})\" "
    command = (f"{password}pg_dump --format=custom --file {shlex.quote(str(args.file))} "
               f"{shlex.quote(config.storage.url)}")
    print(f"mailticketd: backup copies an SQLite database; this desk is on PostgreSQL "
          f"({config.storage.url}), which is backed up with pg_dump while the daemons run "
          f"(restore with pg_restore into an empty database):\n{command}", file=sys.stderr)
    return EXIT_ERROR


def _serve(config: Config, config_file: Path | None) -> int:
    from mailticketd.app import serve
    from mailticketd.daemon_lock import AlreadyRunning
    from mailticketd.services import SecretsNotShared
    from mailticketd.logs import setup_logging

    setup_logging(config.log.format, config.log.level)
    try:
        asyncio.run(serve(config, config_file))
    except (SchemaTooNew, AlreadyRunning, SecretsNotShared) as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"mailticketd: cannot start: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # a template or pipeline fault found at start-up
        print(f"mailticketd: cannot start: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _migrate(args: argparse.Namespace, config: Config) -> int:
    async def migrate() -> dict[str, Any]:
        existed = config.storage.shared or config.storage.database.exists()
        async with database_for(config.storage) as db:
            return {"database": db.describe, "created": not existed,
                    "schema_version": db.schema_version}

    try:
        view = asyncio.run(migrate())
    except SchemaTooNew as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # sqlite3 raises OperationalError for a folder it cannot write: caught below
        print(f"mailticketd: migrate: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        print(f"mailticketd: migrate: cannot open {config.storage.name}: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        hand_over(config)
    emit(args, view, lambda: f"{'created' if view['created'] else 'checked'} {view['database']}: "
                             f"schema version {view['schema_version']}")
    return EXIT_OK


def _check_config(config: Config, production: bool) -> int:
    """Everything start-up checks, without binding a port or opening the database; then the development values."""
    from mailticketd.services import check_start_up

    try:
        check_start_up(config)
    except Exception as error:
        print(f"mailticketd: check-config: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"config OK: {config.source}; templates OK: {config.mail.templates}; database: {config.storage.name}")
    warnings = production_warnings(config)
    if not warnings:
        return EXIT_OK
    print("not for production:" if production else "development values (fine for trying it out; "
          "`check-config --production` refuses them):")
    for key, problem in warnings:
        print(f"  {key}: {problem}")
    return EXIT_ERROR if production else EXIT_OK


def _send_test(config: Config, address: str) -> int:
    from mailticketd.outbox.test_mail import send_test_mail

    address = address.strip()
    if not _ADDRESS.match(address):
        print(f"mailticketd: send-test: {address!r} is not an e-mail address (name@example.org)", file=sys.stderr)
        return EXIT_CONFIG
    if config.mail.is_local(address):
        print(f"mailticketd: send-test: {address} is the desk's own address; the daemon never writes to "
              "itself: give an outside address", file=sys.stderr)
        return EXIT_CONFIG
    try:
        message_id = asyncio.run(send_test_mail(config, address))
    except Exception as error:
        print(f"mailticketd: send-test to {address} failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        hand_over(config, maildir=config.outbound.transport == "maildir")
    print(f"sent a test mail to {address} through {config.outbound.transport}"
          f" ({config.outbound.relay or config.outbound.maildir}), Message-ID <{message_id}>")
    return EXIT_OK


def _status(args: argparse.Namespace, config: Config) -> int:
    """The health report and the daemon's counters; the exit code is the Nagios state."""
    from mailticketd.health import health_report

    async def report() -> dict[str, Any]:
        if not config.storage.shared and not config.storage.database.exists():
            return {"ok": False, "checked_at": iso(utc_now()),
                    "database": {"ok": False, "error": f"no database at {config.storage.database}"}}
        async with database_for(config.storage) as db:
            found = await health_report(db, utc_now(), config.health.stuck_after)
            if found["database"]["ok"]:
                found["daemons"] = await daemons_on(db)
            return found

    try:
        result = asyncio.run(report())
    except Exception as error:  # e.g. a schema too new, an unreadable file
        result = {"ok": False, "checked_at": iso(utc_now()),
                  "database": {"ok": False, "error": f"{type(error).__name__}: {error}"}}
    result["daemon"] = _daemon_counters(config)
    state, reasons = _nagios_state(result)
    result["state"], result["reasons"] = _STATE_NAMES[state].lower(), reasons
    emit(args, result, lambda: _status_text(result, state, reasons))
    return state


async def daemons_on(db: Database) -> list[dict[str, Any]]:
    """Every daemon that has worked on the database lately: host, pid, version, started_at, last_seen, state."""
    now = utc_now()
    async with db.read() as store:
        rows = await DaemonRepository(store.conn).list()
    return [{"host": row.host, "pid": row.pid, "version": row.version, "started_at": row.started_at,
             "last_seen": row.last_seen, "state": row.state(now)} for row in rows]


def _nagios_state(report: dict[str, Any]) -> tuple[int, list[str]]:
    """CRITICAL: no database, the daemon down, or mail not processed; WARNING: mail not leaving, or failed
    mails waiting for an operator; else OK."""
    critical, warning = [], []
    if not report["database"]["ok"]:
        critical.append(f"database: {report['database']['error']}")
    if not report["daemon"]["reachable"]:
        critical.append(f"daemon not reachable at {report['daemon']['url']}")
    if "inbox" in report:
        inbox, outbox = report["inbox"], report["outbox"]
        if not inbox["ok"]:
            critical.append(f"inbox stuck: oldest mail waiting {inbox['oldest_waiting_seconds']} s")
        if not outbox["ok"]:
            warning.append(f"outbox stuck: oldest mail waiting {outbox['oldest_waiting_seconds']} s to leave")
        if inbox["failed"]:
            warning.append(f"{inbox['failed']} failed inbox mails (see `mailticketd inbox`)")
    if critical:
        return STATUS_CRITICAL, critical + warning
    return (STATUS_WARNING, warning) if warning else (STATUS_OK, [])


def _daemon_counters(config: Config) -> dict[str, Any]:
    """The running daemon's counters from its /metrics, or why they could not be read."""
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host
    url = f"http://{host}:{config.http.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own listener)
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as error:
        return {"reachable": False, "url": url, "error": str(getattr(error, "reason", error))}
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_bucket" not in line and "_created" not in line:
            name, _, value = line.rpartition(" ")
            counters[name] = float(value)
    return {"reachable": True, "url": url, "counters": counters}


def _status_text(report: dict[str, Any], state: int, reasons: list[str]) -> str:
    summary = "; ".join(reasons) or "the daemon runs and mail flows"
    lines = [f"health: {_STATE_NAMES[state]}: {summary} (checked {report['checked_at']})"]
    if not report["database"]["ok"]:
        lines.append(f"database: NOT OK: {report['database']['error']}")
    else:
        inbox, outbox = report["inbox"], report["outbox"]
        lines += [
            f"database: OK ({report['database']['backend']}, {report['database']['latency_ms']} ms, "
            f"schema version {report['database']['schema_version']})",
            f"inbox: {'OK' if inbox['ok'] else 'STUCK'}: {inbox['pending']} pending, {inbox['failed']} failed, "
            f"oldest waiting {inbox['oldest_waiting_seconds']} s",
            f"outbox: {'OK' if outbox['ok'] else 'STUCK'}: {outbox['queued']} queued, {outbox['failed']} failed, "
            f"{outbox['sent']} sent, oldest waiting {outbox['oldest_waiting_seconds']} s",
        ]
    if "daemons" in report:
        running = sum(1 for row in report["daemons"] if row["state"] == "running")
        lines.append(f"daemons on the database: {running} running, {len(report['daemons'])} listed")
        lines += [f"  {row['host']} pid {row['pid']} version {row['version']}: {row['state']}, started "
                  f"{row['started_at']}, last seen {row['last_seen']}" for row in report["daemons"]]
    daemon = report["daemon"]
    if not daemon["reachable"]:
        lines.append(f"daemon: not reachable at {daemon['url']} ({daemon['error']})")
    else:
        lines.append(f"daemon: running ({daemon['url']})")
        lines += [f"  {name} {value:g}" for name, value in sorted(daemon["counters"].items())
                  if name.startswith("mailticketd_")]
    return "\n".join(lines)


async def _backup(args: argparse.Namespace, config: Config, db: Database) -> None:
    target: Path = args.file
    if target.exists() and not args.force:
        raise CommandError(f"{str(target)!r} exists; add --force to replace it")
    if target.resolve() == config.storage.database.resolve():
        raise CommandError(f"{str(target)!r} is the live database itself")
    try:
        await db.backup(target)
    except OSError as error:
        raise CommandError(f"cannot write {str(target)!r}: {error.strerror or error}") from None
    view = {"file": str(target), "size": target.stat().st_size, "schema_version": db.schema_version}
    emit(args, view, lambda: f"backed up {config.storage.database} to {target} ({view['size']} bytes)")
