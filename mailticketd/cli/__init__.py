"""The command line: ``serve`` and the staff and admin commands; a thin front over views and storage."""

from __future__ import annotations

import argparse
import asyncio
import sys

from mailticketd import __version__
from mailticketd.cli import directory, move, ops, tickets
from mailticketd.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, CommandError, Handler, require_database
from mailticketd.cli.ownership import hand_over
from mailticketd.config import Config, ConfigError, config_path, load_config
from mailticketd.storage import SchemaTooNew, database_for

_HANDLERS: dict[tuple[str, str | None], Handler] = {}
_CONFIG_HELP = "TOML config file (default: $MAILTICKETD_CONFIG, else /etc/mailticketd/mailticketd.toml if it " \
               "exists, else the embedded defaults)"
_ACTOR_HELP = "who makes a change, for the audit log (default: $SUDO_USER, else the login name)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticketd", description="Mail-driven support desk daemon.")
    parser.add_argument("--version", action="version", version=f"mailticketd {__version__}")
    parser.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument("--actor", metavar="NAME", help=_ACTOR_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")
    for module in (ops, move, tickets, directory):
        _HANDLERS.update(module.add_parsers(commands, json_flag))
    _finish_subcommands(parser)
    return parser


def _finish_subcommands(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's ``--help`` starts with its own description, and takes ``--config``/``--actor`` too.

    The options get no default below the top level, so ``mailticketd --config X tickets`` and
    ``mailticketd tickets --config X`` mean the same.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        described = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if sub.description is None:
                sub.description = described.get(name)
            sub.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=_CONFIG_HELP)
            sub.add_argument("--actor", metavar="NAME", default=argparse.SUPPRESS, help=_ACTOR_HELP)
            _finish_subcommands(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments:  # no command: the list of commands, each with what it does
        parser.print_help()
        return EXIT_CONFIG
    args = parser.parse_args(arguments)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as error:
        print(f"mailticketd: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    standalone = ops.run_standalone(args, config)
    if standalone is None:
        standalone = move.run_standalone(args, config)
    if standalone is not None:
        return standalone
    try:
        return asyncio.run(_run_command(args, config))
    except (CommandError, SchemaTooNew) as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR


async def _run_command(args: argparse.Namespace, config: Config) -> int:
    require_database(config)
    db = database_for(config.storage)
    try:
        await db.open()
        try:
            await _HANDLERS[(args.command, getattr(args, "action", None))](args, config, db)
        finally:
            await db.close()
    finally:
        hand_over(config)
    return EXIT_OK
