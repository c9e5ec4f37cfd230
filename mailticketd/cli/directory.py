"""The staff commands for the directory: organisations, users, contacts, VMs, and the audit log."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mailticketd.cli.common import CommandError, Handler, date_argument, emit
from mailticketd.clock import utc_now
from mailticketd.config import LANGUAGES, Config
from mailticketd.directory.admin import ROLES, DirectoryAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import User
from mailticketd.services import make_mailer
from mailticketd.storage import Database
from mailticketd.tables import render_table
from mailticketd.views import (
    audit_view,
    organisation_view,
    organisations_view,
    user_view,
    vm_view,
    vms_view,
)


def add_parsers(commands: Any, json_flag: argparse.ArgumentParser) -> dict[tuple[str, str | None], Handler]:
    """The directory commands: organisations, users, contacts, VMs, and the audit log."""
    def sub(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, parents=[json_flag], help=text)  # type: ignore[no-any-return]

    def membership(command: argparse.ArgumentParser) -> None:
        command.add_argument("address")
        command.add_argument("--org", required=True, metavar="ORGANISATION")
        command.add_argument("--manager", action="store_true",
                             help="sees and acts on all tickets of the organisation; only with --authorised")
        command.add_argument("--authorised", action="store_true",
                             help="an authorised contact (weisungsberechtigt), and so a manager")
        command.add_argument("--language", choices=LANGUAGES, help="language of the mails to this user")

    org = commands.add_parser("org", help="one organisation").add_subparsers(dest="action", required=True)
    create = sub(org, "create", "a new customer; both contacts become authorised managers and get a link")
    create.add_argument("name")
    create.add_argument("--commercial", required=True, metavar="ADDR", help="the commercial contact of the order")
    create.add_argument("--technical", required=True, metavar="ADDR", help="the technical contact: primary contact")
    create.add_argument("--language", choices=LANGUAGES, help="language of the mails to both contacts")
    sub(org, "show", "members, contacts, VMs and warnings").add_argument("name")
    sub(commands, "orgs", "list organisations with their contacts and warnings")

    user = commands.add_parser("user", help="one user").add_subparsers(dest="action", required=True)
    add = sub(user, "add", "register an address in an organisation and send it a verification link")
    membership(add)
    add.add_argument("--name", default="", help="the person's name")
    add.add_argument("--phone", default="", help="the person's phone number")
    membership(sub(user, "assign", "put a known address without organisation into one"))
    authorise = sub(user, "authorise", "make a member an authorised contact and a manager")
    authorise.add_argument("address")
    authorise.add_argument("--temporary", action="store_true",
                           help="until a date, for an organisation without authorised contact")
    authorise.add_argument("--until", type=date_argument, metavar="YYYY-MM-DD", help="last day of the authorisation")
    authorise.add_argument("--note", metavar="TEXT", help="why, e.g. the register extract it rests on")
    sub(user, "deauthorise", "withdraw the authorisation and the manager role").add_argument("address")
    role = sub(user, "role", "check a member's role: it follows the authorisation (see authorise)")
    role.add_argument("address")
    role.add_argument("role", choices=ROLES)
    sub(user, "deactivate", "a user who left: kept with their tickets, acts on nothing").add_argument("address")
    sub(user, "delete", "remove an address entered by mistake (never a user with tickets)").add_argument("address")
    sub(user, "show", "one user").add_argument("address")

    primary = commands.add_parser("primary", help="primary contacts").add_subparsers(dest="action", required=True)
    primary_set = sub(primary, "set", "make a member the organisation's primary contact")
    primary_set.add_argument("organisation")
    primary_set.add_argument("address")
    monitoring = commands.add_parser("monitoring", help="monitoring contacts").add_subparsers(
        dest="action", required=True)
    monitoring_set = sub(monitoring, "set", "make a member a monitoring contact, with name and phone number")
    monitoring_set.add_argument("address")
    monitoring_set.add_argument("--name", help="the name the contact is reached by")
    monitoring_set.add_argument("--phone", help="the phone number the contact is reached by")
    sub(monitoring, "unset", "a user is no longer a monitoring contact").add_argument("address")

    vm = commands.add_parser("vm", help="the VM inventory").add_subparsers(dest="action", required=True)
    vm_add = sub(vm, "add", "add a VM to an organisation")
    vm_add.add_argument("name")
    vm_add.add_argument("organisation")
    sub(vm, "import", "add the VMs of a CSV file name,organisation, all or none").add_argument("file", type=Path)
    sub(commands, "vms", "list the VM inventory").add_argument("--org", metavar="ORGANISATION")
    sub(commands, "audit", "the audit log, oldest first").add_argument("--subject", help="only about this name")
    return {
        ("org", "create"): _org_create,
        ("org", "show"): _org_show,
        ("orgs", None): _orgs,
        ("user", "add"): _user_add,
        ("user", "assign"): _user_assign,
        ("user", "authorise"): _user_authorise,
        ("user", "deauthorise"): _user_deauthorise,
        ("user", "role"): _user_role,
        ("user", "deactivate"): _user_deactivate,
        ("user", "delete"): _user_delete,
        ("user", "show"): _user_show,
        ("primary", "set"): _primary_set,
        ("monitoring", "set"): _monitoring_set,
        ("monitoring", "unset"): _monitoring_unset,
        ("vm", "add"): _vm_add,
        ("vm", "import"): _vm_import,
        ("vms", None): _vms,
        ("audit", None): _audit,
    }


def _actor(args: argparse.Namespace) -> str:
    """Who is changing things: ``--actor``, else the user who ran sudo, else the login name."""
    if args.actor and args.actor.strip():
        return str(args.actor.strip())
    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        return getpass.getuser()
    except OSError:
        return f"uid {os.getuid()}"


@asynccontextmanager
async def _admin(args: argparse.Namespace, config: Config, db: Database) -> AsyncIterator[DirectoryAdmin]:
    """One staff change: its transaction, its actor and time; a refusal rolls everything back."""
    mailer = make_mailer(config)
    try:
        async with db.transaction() as store:
            yield DirectoryAdmin(store, config, mailer, actor=_actor(args), now=utc_now())
    except AdminError as error:
        raise CommandError(str(error)) from None


_USER_COLUMNS = [("ADDRESS", "address"), ("STATUS", "status"), ("ORGANISATION", "organisation"), ("ROLE", "role"),
                 ("AUTHORISED", "authorised"), ("UNTIL", "authorised_until"), ("MONITORING", "monitoring_contact")]
_WARNINGS = {"no-primary-contact": "no primary contact", "no-authorised-contact": "no authorised contact",
             "no-monitoring-contact": "no monitoring contact",
             "primary-contact-left": "the primary contact left: ask for a replacement",
             "monitoring-contact-left": "a monitoring contact left: ask for a replacement",
             "temporary-authorisation-expires": "temporary authorisation about to expire:",
             "temporary-authorisation-expired": "temporary authorisation expired:",
             "primary-contact-inactive": "the primary contact has left:",
             "primary-contact-undeliverable": "the primary contact cannot receive mail (last delivery failed):"}
_NO_AUTHORISED = ("nobody may give instructions for this organisation: ask for a commercial or association register "
                  "extract naming the managing director or chair, then 'mailticketd user authorise ADDRESS "
                  "--temporary --until YYYY-MM-DD --note TEXT'")


def _warning_text(code: str) -> str:
    name, _, detail = code.partition(":")
    return f"{_WARNINGS.get(name, name)} {detail.replace(':', ' on ')}".strip()


def _contact_text(contact: dict[str, Any]) -> str:
    details = ", ".join(part for part in (contact["name"], contact["phone"] and f"phone {contact['phone']}") if part)
    return f"{contact['address']} ({details})" if details else contact["address"]


def _organisation_text(view: dict[str, Any]) -> str:
    temporary = {item["address"]: item["until"] for item in view["temporary_authorisations"]}
    authorised = [f"{address} (temporary, through {temporary[address]})" if address in temporary else address
                  for address in view["authorised_contacts"]]
    lines = [view["name"],
             f"primary contact: {view['primary_contact'] or '-'}",
             f"authorised contacts: {', '.join(authorised) or '-'}",
             f"monitoring contacts: {', '.join(map(_contact_text, view['monitoring_details'])) or '-'}",
             f"VMs: {', '.join(view['vms']) or '-'}"]
    lines += [f"warning: {_warning_text(code)}" for code in view["warnings"]]
    if "no-authorised-contact" in view["warnings"]:
        lines.append(f"warning: {_NO_AUTHORISED}")
    if view["members"]:
        lines += ["", render_table([column for column in _USER_COLUMNS if column[1] != "organisation"]
                                   + [("PRIMARY", "primary_contact")], view["members"])]
    return "\n".join(lines)


async def _org_create(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with _admin(args, config, db) as admin:
        organisation = await admin.create_organisation(args.name, commercial=args.commercial,
                                                       technical=args.technical, language=args.language)
        view = await organisation_view(admin.store, organisation, admin.now)
    emit(args, view, lambda: f"{_organisation_text(view)}\n\nverification mails queued for "
                              f"{', '.join(view['authorised_contacts'])}")


async def _org_show(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        organisation = await store.organisations.by_name(args.name)
        if organisation is None:
            raise CommandError(f"unknown organisation {args.name!r}")
        view = await organisation_view(store, organisation, utc_now())
    emit(args, view, lambda: _organisation_text(view))


async def _orgs(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        rows = await organisations_view(store, utc_now())
    table = [row | {"members": len(row["members"]), "vms": len(row["vms"]),
                    "warnings": [code.partition(":")[0] for code in row["warnings"]]} for row in rows]
    emit(args, rows, lambda: render_table(
        [("NAME", "name"), ("PRIMARY", "primary_contact"), ("AUTHORISED", "authorised_contacts"),
         ("MONITORING", "monitoring_contacts"), ("MEMBERS", "members"), ("VMS", "vms"),
         ("WARNINGS", "warnings")], table, width=80))


async def _user_change(args: argparse.Namespace, config: Config, db: Database,
                       change: Callable[[DirectoryAdmin], Awaitable[User]], done: str) -> None:
    async with _admin(args, config, db) as admin:
        user = await change(admin)
    view = user_view(user)
    emit(args, view, lambda: f"{done}\n{render_table(_USER_COLUMNS, [view])}")


async def _user_add(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.add_user(
        args.address, args.org, manager=args.manager, authorised=args.authorised, language=args.language,
        name=args.name, phone=args.phone), f"added {args.address} to {args.org!r}; verification mail queued")


async def _user_assign(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.assign_user(
        args.address, args.org, manager=args.manager, authorised=args.authorised, language=args.language),
        f"assigned {args.address} to {args.org!r}")


async def _user_authorise(args: argparse.Namespace, config: Config, db: Database) -> None:
    if not args.temporary:
        if args.until or args.note:
            raise CommandError("--until and --note belong to a temporary authorisation: add --temporary")
        await _user_change(args, config, db, lambda admin: admin.authorise(args.address),
                           f"{args.address} is an authorised contact")
        return
    if args.until is None or args.note is None:
        raise CommandError("--temporary needs --until YYYY-MM-DD and --note TEXT")
    await _user_change(args, config, db, lambda admin: admin.authorise_temporarily(
        args.address, until=args.until, note=args.note),
        f"{args.address} is an authorised contact through {args.until.isoformat()}")


async def _user_deauthorise(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.deauthorise(args.address),
                       f"{args.address} is no longer an authorised contact")


async def _user_role(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.set_role(args.address, args.role),
                       f"{args.address} is a {args.role} now")


async def _user_deactivate(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with _admin(args, config, db) as admin:
        user, asked = await admin.deactivate(args.address)
    view = user_view(user) | {"asked_for_replacement": asked}
    note = f"; asked {', '.join(asked)} to name a replacement" if asked else ""
    emit(args, view, lambda: f"{user.address} is inactive{note}\n{render_table(_USER_COLUMNS, [view])}")


async def _user_delete(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with _admin(args, config, db) as admin:
        user = await admin.delete_user(args.address)
    view = user_view(user) | {"deleted": True}
    emit(args, view, lambda: f"deleted {user.address}")


async def _user_show(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        user = await store.users.by_address(args.address)
    if user is None:
        raise CommandError(f"unknown user {args.address!r}")
    view = user_view(user)
    emit(args, view, lambda: render_table(_USER_COLUMNS + [("NOTE", "authorisation_note")], [view]))


async def _primary_set(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with _admin(args, config, db) as admin:
        organisation = await admin.set_primary_contact(args.organisation, args.address)
        view = await organisation_view(admin.store, organisation, admin.now)
    emit(args, view, lambda: _organisation_text(view))


async def _monitoring_set(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.set_monitoring_contact(
        args.address, True, name=args.name, phone=args.phone), f"{args.address} is a monitoring contact")


async def _monitoring_unset(args: argparse.Namespace, config: Config, db: Database) -> None:
    await _user_change(args, config, db, lambda admin: admin.set_monitoring_contact(args.address, False),
                       f"{args.address} is no longer a monitoring contact")


async def _vm_add(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with _admin(args, config, db) as admin:
        view = vm_view(await admin.add_vm(args.name, args.organisation))
    emit(args, view, lambda: f"added {view['name']} to {view['organisation']!r}")


async def _vm_import(args: argparse.Namespace, config: Config, db: Database) -> None:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read {str(args.file)!r}: {getattr(error, 'strerror', None) or error}") from None
    async with _admin(args, config, db) as admin:
        result = await admin.import_vms(str(args.file), text)
    view = {"added": [vm_view(vm) for vm in result.added], "unchanged": [vm_view(vm) for vm in result.unchanged]}
    emit(args, view, lambda: f"added {len(result.added)} VMs, {len(result.unchanged)} were already there"
                              + ("\n" + render_table([("NAME", "name"), ("ORGANISATION", "organisation")],
                                                      view["added"]) if result.added else ""))


async def _vms(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        organisation = await store.organisations.by_name(args.org) if args.org else None
        if args.org and organisation is None:
            raise CommandError(f"unknown organisation {args.org!r}")
        rows = await vms_view(store, organisation.id if organisation else None)
    emit(args, rows, lambda: render_table([("NAME", "name"), ("ORGANISATION", "organisation")], rows))


async def _audit(args: argparse.Namespace, config: Config, db: Database) -> None:
    async with db.read() as store:
        rows = await audit_view(store, args.subject)
    emit(args, rows, lambda: render_table(
        [("AT", "at"), ("ACTOR", "actor"), ("ACTION", "action"), ("SUBJECT", "subject"), ("CHANGE", "change")],
        [row | {"change": _change_text(row["before"], row["after"]) + _request_text(row["request"])} for row in rows],
        width=100))


def _request_text(request: dict[str, Any] | None) -> str:
    """The ticket and requester a change by mail was made for, and whether the operator overrode the rule."""
    if not request:
        return ""
    override = "; requester NOT authorised, carried out with '!'" if request.get("override") else ""
    return f" (ticket {request.get('tag')}, requested by {request.get('requester') or '-'}{override})"


def _change_text(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    if before is None or after is None:
        return "created" if before is None else "deleted"
    return ", ".join(f"{key}: {json.dumps(before.get(key))} → {json.dumps(after.get(key))}"
                     for key in after if before.get(key) != after.get(key)) or "-"
