"""Commands for admins: ``serve``, ``status``, ``check-config``, ``send-test``, ``backup``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mailticketd.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, CommandError, Handler, emit
from mailticketd.clock import utc_now
from mailticketd.config import Config, config_path
from mailticketd.storage import Database, SchemaTooNew


def add_parsers(commands: Any, json_flag: argparse.ArgumentParser) -> dict[tuple[str, str | None], Handler]:
    commands.add_parser("serve", help="run the daemon")
    commands.add_parser("check-config", help="check the config file and the templates; non-zero on a fault")
    send_test = commands.add_parser("send-test", help="send one test mail through the configured transport")
    send_test.add_argument("address")
    commands.add_parser("status", parents=[json_flag], help="health and counters, as /healthz and /metrics")
    backup = commands.add_parser("backup", parents=[json_flag], help="a consistent copy of the live database")
    backup.add_argument("file", type=Path)
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    return {("status", None): _status, ("backup", None): _backup}


def run_standalone(args: argparse.Namespace, config: Config) -> int | None:
    """The commands that need no database of their own; None for any other command."""
    if args.command == "serve":
        return _serve(config, config_path(args.config))
    if args.command == "check-config":
        return _check_config(config)
    if args.command == "send-test":
        return asyncio.run(_send_test(config, args.address))
    return None


def _serve(config: Config, config_file: Path | None) -> int:
    from mailticketd.app import serve
    from mailticketd.logs import setup_logging

    setup_logging(config.log.format, config.log.level)
    try:
        asyncio.run(serve(config, config_file))
    except SchemaTooNew as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"mailticketd: cannot start: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # a template or pipeline fault found at start-up
        print(f"mailticketd: cannot start: {error}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def _check_config(config: Config) -> int:
    """Everything start-up checks, without binding a port or opening the database."""
    from mailticketd.services import check_start_up

    try:
        check_start_up(config)
    except Exception as error:
        print(f"mailticketd: check-config: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"config OK: {config.source}; templates OK: {config.mail.templates}")
    return EXIT_OK


async def _send_test(config: Config, address: str) -> int:
    from mailticketd.outbox.test_mail import send_test_mail

    try:
        message_id = await send_test_mail(config, address)
    except Exception as error:
        print(f"mailticketd: send-test to {address} failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"sent a test mail to {address} through {config.outbound.transport}"
          f" ({config.outbound.relay or config.outbound.maildir}), Message-ID <{message_id}>")
    return EXIT_OK


async def _status(args: argparse.Namespace, config: Config, db: Database) -> None:
    from mailticketd.health import health_report

    report = await health_report(db, utc_now(), config.health.stuck_after)
    report["daemon"] = await asyncio.to_thread(_daemon_counters, config)
    emit(args, report, lambda: _status_text(report))
    if not report["ok"]:
        raise SystemExit(EXIT_ERROR)  # for scripts and monitoring; the report above says why


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


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"health: {'OK' if report['ok'] else 'NOT OK'} (checked {report['checked_at']})"]
    if not report["database"]["ok"]:
        return "\n".join(lines + [f"database: NOT OK: {report['database']['error']}"])
    inbox, outbox = report["inbox"], report["outbox"]
    lines += [
        "database: OK",
        f"inbox: {'OK' if inbox['ok'] else 'STUCK'}: {inbox['pending']} pending, {inbox['failed']} failed, "
        f"oldest waiting {inbox['oldest_waiting_seconds']} s",
        f"outbox: {'OK' if outbox['ok'] else 'STUCK'}: {outbox['queued']} queued, {outbox['failed']} failed, "
        f"{outbox['sent']} sent, oldest waiting {outbox['oldest_waiting_seconds']} s",
    ]
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
