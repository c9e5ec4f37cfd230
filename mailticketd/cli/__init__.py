"""The command line: ``serve`` and the staff and admin commands; a thin front over views and storage."""

from __future__ import annotations

import argparse
import asyncio
import sys

from mailticketd import __version__
from mailticketd.cli import directory, ops, tickets
from mailticketd.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, CommandError, Handler
from mailticketd.config import Config, ConfigError, config_path, load_config
from mailticketd.storage import Database, SchemaTooNew

_HANDLERS: dict[tuple[str, str | None], Handler] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticketd", description="Mail-driven support desk daemon.")
    parser.add_argument("--version", action="version", version=f"mailticketd {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: $MAILTICKETD_CONFIG, "
                                                          "else the embedded defaults)")
    parser.add_argument("--actor", metavar="NAME", help="who makes a change, for the audit log "
                                                        "(default: $SUDO_USER, else the login name)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")
    for module in (ops, tickets, directory):
        _HANDLERS.update(module.add_parsers(commands, json_flag))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as error:
        print(f"mailticketd: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    standalone = ops.run_standalone(args, config)
    if standalone is not None:
        return standalone
    try:
        return asyncio.run(_run_command(args, config))
    except (CommandError, SchemaTooNew) as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR


async def _run_command(args: argparse.Namespace, config: Config) -> int:
    db = Database(config.storage.database, busy_timeout=config.storage.busy_timeout)
    await db.open()
    try:
        await _HANDLERS[(args.command, getattr(args, "action", None))](args, config, db)
    finally:
        await db.close()
    return EXIT_OK
