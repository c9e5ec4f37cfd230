"""Commands about tickets, users and the inbox: ``tickets``, ``ticket show``, ``users``, ``inbox``."""

from __future__ import annotations

import argparse
import re
from typing import Any

from mailticketd.cli.common import STANDINGS, CommandError, Handler, emit, positive_int
from mailticketd.config import Config
from mailticketd.storage import Database
from mailticketd.tables import render_table
from mailticketd.views import inbox_row_view, inbox_view, ticket_detail_view, tickets_view, users_view


def add_parsers(commands: Any, json_flag: argparse.ArgumentParser) -> dict[tuple[str, str | None], Handler]:
    commands.add_parser("tickets", parents=[json_flag], help="list tickets")
    ticket = commands.add_parser("ticket", help="one ticket").add_subparsers(dest="action", required=True)
    show = ticket.add_parser("show", parents=[json_flag], help="a ticket with participants, VMs and articles")
    show.add_argument("number", type=ticket_reference, metavar="NUMBER|TAG",
                      help="the ticket's number (10042) or its subject tag ([MH#10042])")
    commands.add_parser("users", parents=[json_flag], help="list users")

    inbox = commands.add_parser("inbox", parents=[json_flag], help="pending and failed inbox rows")
    inbox.add_argument("--all", action="store_true", help="also list rows that are done")
    inbox_actions = inbox.add_subparsers(dest="action")
    retry = inbox_actions.add_parser("retry", parents=[json_flag], help="process a failed inbox row again")
    retry.add_argument("id", type=positive_int)
    return {
        ("tickets", None): _tickets,
        ("ticket", "show"): _ticket_show,
        ("users", None): _users,
        ("inbox", None): _inbox,
        ("inbox", "retry"): _inbox_retry,
    }


async def _tickets(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        rows = await tickets_view(config, store)
    emit(args, rows, lambda: render_table(
        [("TAG", "tag"), ("STATUS", "status"), ("ORGANISATION", "organisation"), ("REQUESTER", "requester"),
         ("SUBJECT", "subject")], rows))


_REFERENCE = re.compile(r"\[?\s*(?P<prefix>[^\[\]\s\d][^\[\]\d]*?)?\s*(?P<number>\d+)\s*\]?")


def ticket_reference(text: str) -> tuple[str, int]:
    """A ticket number, or a subject tag as it appears in a subject: ``10042``, ``[MH#10042]``, ``MH#10042``."""
    found = _REFERENCE.fullmatch(text.strip())
    if found is None or int(found["number"]) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ticket number or tag (10042 or [MH#10042])")
    return found["prefix"] or "", int(found["number"])


async def _ticket_show(args: argparse.Namespace, config: Config, db: Database) -> None:
    prefix, number = args.number
    if prefix and prefix.lower() != config.mail.tag_prefix.lower():
        raise CommandError(f"{prefix + str(number)!r} is not a tag of this desk (its tags look like "
                           f"[{config.mail.tag_prefix}{number}])")
    async with db.read() as store:
        view = await ticket_detail_view(config, store, number)
    if view is None:
        raise CommandError(f"no ticket with number {number}")
    emit(args, view, lambda: _ticket_text(view))


def _ticket_text(view: dict[str, Any]) -> str:
    lines = [f"{view['tag']} {view['subject']}",
             f"status: {view['status']}   organisation: {view['organisation'] or '-'}   "
             f"requester: {view['requester'] or '-'}", "", "participants:",
             render_table([("ADDRESS", "address"), ("STATUS", "status"), ("ROLE", "role"),
                           ("ORGANISATION", "organisation")], view["participants"])]
    if view["vms"]:
        lines += ["", "VMs (organisation: the inventory now; flags: when the mail came):",
                  render_table([("NAME", "name"), ("ORGANISATION", "organisation"), ("FLAGS", "flags")],
                               [vm | {"organisation": vm["organisation"] or "(not in the inventory)"}
                                for vm in view["vms"]])]
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
    emit(args, rows, lambda: render_table(
        [("ADDRESS", "address"), ("STATUS", "status"), ("ORGANISATION", "organisation"), ("ROLE", "role"),
         ("AUTHORISED", "authorised"), ("STANDING", "standing")],
        [row | {"standing": STANDINGS.get(row["standing"], row["standing"])} for row in rows]))


async def _inbox(args: argparse.Namespace, config: Config, db: Database) -> None:
    statuses = ("pending", "failed", "done") if args.all else ("pending", "failed")
    async with db.read() as store:
        rows = await inbox_view(store, statuses)
    emit(args, rows, lambda: render_table(
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
    emit(args, view, lambda: f"inbox row {args.id} queued again; the running daemon processes it next")
