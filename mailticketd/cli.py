"""The command line: ``serve`` and the staff commands; a thin front over views and storage."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from mailticketd import __version__
from mailticketd.config import Config, ConfigError, config_path, load_config
from mailticketd.storage import Database, SchemaTooNew
from mailticketd.tables import render_table
from mailticketd.views import inbox_row_view, inbox_view, ticket_detail_view, tickets_view, users_view

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


class CommandError(Exception):
    """A staff command cannot do what was asked; the message says why."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailticketd", description="Mail-driven support desk daemon.")
    parser.add_argument("--version", action="version", version=f"mailticketd {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: $MAILTICKETD_CONFIG, "
                                                          "else the embedded defaults)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", help="run the daemon")

    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")

    commands.add_parser("tickets", parents=[json_flag], help="list tickets")
    ticket = commands.add_parser("ticket", help="one ticket").add_subparsers(dest="action", required=True)
    show = ticket.add_parser("show", parents=[json_flag], help="a ticket with participants, VMs and articles")
    show.add_argument("number", type=_positive_int)
    commands.add_parser("users", parents=[json_flag], help="list users")

    inbox = commands.add_parser("inbox", parents=[json_flag], help="pending and failed inbox rows")
    inbox.add_argument("--all", action="store_true", help="also list rows that are done")
    inbox_actions = inbox.add_subparsers(dest="action")
    retry = inbox_actions.add_parser("retry", parents=[json_flag], help="process a failed inbox row again")
    retry.add_argument("id", type=_positive_int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as error:
        print(f"mailticketd: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        return _serve(config)
    try:
        return asyncio.run(_run_command(args, config))
    except CommandError as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR
    except SchemaTooNew as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR


def _serve(config: Config) -> int:
    from mailticketd.app import serve
    from mailticketd.logs import setup_logging

    setup_logging(config.log.format, config.log.level)
    try:
        asyncio.run(serve(config))
    except SchemaTooNew as error:
        print(f"mailticketd: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"mailticketd: cannot start: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


async def _run_command(args: argparse.Namespace, config: Config) -> int:
    db = Database(config.storage.database, busy_timeout=config.storage.busy_timeout)
    await db.open()
    try:
        handler = _HANDLERS[(args.command, getattr(args, "action", None))]
        await handler(args, config, db)
    finally:
        await db.close()
    return EXIT_OK


def _emit(args: argparse.Namespace, data: Any, table: Callable[[], str]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else table())


async def _tickets(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        rows = await tickets_view(config, store)
    _emit(args, rows, lambda: render_table(
        [("TAG", "tag"), ("STATUS", "status"), ("ORGANISATION", "organisation"), ("REQUESTER", "requester"),
         ("SUBJECT", "subject")], rows))


async def _ticket_show(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        view = await ticket_detail_view(config, store, args.number)
    if view is None:
        raise CommandError(f"no ticket with number {args.number}")
    _emit(args, view, lambda: _ticket_text(view))


def _ticket_text(view: dict[str, Any]) -> str:
    lines = [f"{view['tag']} {view['subject']}",
             f"status: {view['status']}   organisation: {view['organisation'] or '-'}   "
             f"requester: {view['requester'] or '-'}", "", "participants:",
             render_table([("ADDRESS", "address"), ("STATUS", "status"), ("ROLE", "role"),
                           ("ORGANISATION", "organisation")], view["participants"])]
    if view["vms"]:
        lines += ["", "VMs:", render_table([("NAME", "name"), ("ORGANISATION", "organisation"),
                                            ("FLAGS", "flags")], view["vms"])]
    for article in view["articles"]:
        lines += ["", f"--- article {article['id']} · {article['kind']} · {article['created_at']}",
                  f"from: {article['author']} ({article['author_status']})"]
        if article["flags"]:
            lines.append(f"flags: {', '.join(article['flags'])}")
        for item in article["attachments"]:
            lines.append(f"attachment: {item['name']} ({item['content_type']}, {item['size']} bytes)")
        lines += ["", article["visible_text"]]
    return "\n".join(lines)


async def _users(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        rows = await users_view(store)
    _emit(args, rows, lambda: render_table(
        [("ADDRESS", "address"), ("STATUS", "status"), ("ORGANISATION", "organisation"), ("ROLE", "role"),
         ("AUTHORISED", "authorised")], rows))


async def _inbox(args: argparse.Namespace, config: Config, db: Database) -> None:
    statuses = ("pending", "failed", "done") if args.all else ("pending", "failed")
    async with db.read() as store:
        rows = await inbox_view(store, statuses)
    _emit(args, rows, lambda: render_table(
        [("ID", "id"), ("STATUS", "status"), ("RECEIVED", "received_at"), ("FROM", "mail_from"),
         ("ATTEMPTS", "attempts"), ("REASON", "reason")], rows, width=80))


async def _inbox_retry(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.transaction() as store:
        row = await store.inbox.retry(args.id)
    if row is None:
        raise CommandError(f"no inbox row with id {args.id}")
    if row.status != "failed":
        raise CommandError(f"inbox row {args.id} is {row.status}, not failed: nothing to retry")
    view = inbox_row_view(row) | {"status": "pending"}
    _emit(args, view, lambda: f"inbox row {args.id} queued again; the running daemon processes it next")


_Handler = Callable[[argparse.Namespace, Config, Database], Awaitable[None]]
_HANDLERS: dict[tuple[str, str | None], _Handler] = {
    ("tickets", None): _tickets,
    ("ticket", "show"): _ticket_show,
    ("users", None): _users,
    ("inbox", None): _inbox,
    ("inbox", "retry"): _inbox_retry,
}
