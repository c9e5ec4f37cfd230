"""The staff CLI for the directory, run as a subprocess against a real SQLite file, as an admin's script would."""

from __future__ import annotations

import asyncio
import email
import hashlib
import json
import re
import sqlite3
import subprocess
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailticketd.app import Daemon
from mailticketd.config import Config
from tests.helpers import make_config, make_mail, send, settle
from tests.process import cli

ORG = "Customer GmbH"
TECH = "tech@customer.example"
CHEF = "chef@customer.example"
LINK = re.compile(r"http://127\.0\.0\.1:8025/verify/([A-Za-z0-9_-]{43})")


def config_file(tmp_path: Path) -> Path:
    """A site config on the same files as ``make_config(tmp_path)``, so the CLI and an in-process daemon share them."""
    path = tmp_path / "staff.toml"
    if not path.exists():
        path.write_text(f'[storage]\ndatabase = "{tmp_path / "mailticketd.sqlite3"}"\n'
                        f'[outbound]\nmaildir = "{tmp_path / "maildir"}"\n'
                        '[mail]\naddresses = ["support@example.net", "helpdesk@example.net"]\n', encoding="utf-8")
        assert cli("--config", str(path), "migrate").returncode == 0  # staff commands never create a database
    return path


def run(tmp_path: Path, *args: str, actor: str | None = "alice",
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(config_file(tmp_path))] + (["--actor", actor] if actor else [])
    return cli(*prefix, *args, env=env)


def ok(tmp_path: Path, *args: str) -> Any:
    """Run a command with ``--json``; it must succeed; returns the parsed output."""
    result = run(tmp_path, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(tmp_path: Path, *args: str) -> str:
    """Run a command that must be refused with exit 1; returns the message without the program name."""
    result = run(tmp_path, *args)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("mailticketd: ")
    return message.removeprefix("mailticketd: ")


@dataclass
class Queued:
    kind: str
    rcpt_to: str
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return str(self.message.get_content())


def outbox(tmp_path: Path) -> list[Queued]:
    with sqlite3.connect(tmp_path / "mailticketd.sqlite3") as conn:
        rows = conn.execute("SELECT kind, rcpt_to, raw FROM outbox ORDER BY id").fetchall()
    return [Queued(kind, rcpt_to, email.message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
            for kind, rcpt_to, raw in rows]


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    return ok(tmp_path, "audit")  # type: ignore[no-any-return]


def create_org(tmp_path: Path, name: str = ORG, technical: str = TECH, commercial: str = CHEF) -> dict[str, Any]:
    return ok(tmp_path, "org", "create", name, "--commercial", commercial, "--technical", technical)  # type: ignore


def daemon_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """The in-process daemon's config: the CLI's files, every listener on a free port."""
    return make_config(tmp_path, http={"listen": "127.0.0.1:0"}, **sections)


def member(view: dict[str, Any], address: str) -> dict[str, Any]:
    [found] = [user for user in view["members"] if user["address"] == address]
    return found


async def open_ticket(tmp_path: Path, sender: str) -> None:
    """``sender`` writes in through the real daemon, so they have a ticket."""
    async with Daemon(daemon_config(tmp_path)) as daemon:
        await send(daemon.smtp_port, make_mail(sender, subject="Server down"))
        await settle(daemon)


# -- organisations ---------------------------------------------------------------------------------------------


def test_org_create_makes_both_contacts_authorised_managers_and_the_technical_one_primary(tmp_path: Path) -> None:
    """``org create`` registers both order contacts as authorised managers, the technical one as primary contact."""
    view = create_org(tmp_path, technical="Tech@Customer.example")
    assert view["name"] == ORG
    assert view["primary_contact"] == TECH
    assert view["authorised_contacts"] == [CHEF, TECH]
    assert view["managers"] == [CHEF, TECH]
    assert view["monitoring_contacts"] == [] and view["vms"] == [] and view["flags"] == []
    assert view["warnings"] == ["no-monitoring-contact"]
    for address in (CHEF, TECH):
        user = member(view, address)
        assert (user["status"], user["role"], user["authorised"], user["organisation"]) == (
            "active", "manager", True, ORG)  # registered by staff: not "unverified" (DESIGN §1)
    assert member(view, TECH)["primary_contact"] and not member(view, CHEF)["primary_contact"]


def test_org_create_sends_both_contacts_a_verification_link(tmp_path: Path) -> None:
    """Each contact from the order gets a mail with their own verification link to set a password."""
    create_org(tmp_path)
    mails = outbox(tmp_path)
    assert [(mail.kind, mail.rcpt_to) for mail in mails] == [("verify", TECH), ("verify", CHEF)]
    with sqlite3.connect(tmp_path / "mailticketd.sqlite3") as conn:
        stored = dict(conn.execute("SELECT t.sha256, u.address FROM verification_tokens t "
                                   "JOIN users u ON u.id = t.user_id").fetchall())
    for mail in mails:
        assert mail.subject == f"Ihr Zugang zum Support für {ORG}"
        assert "weisungsberechtigt" in mail.body
        match = LINK.search(mail.body)
        assert match, mail.body
        assert stored[hashlib.sha256(match.group(1).encode()).hexdigest()] == mail.rcpt_to


def test_org_create_refusals(tmp_path: Path) -> None:
    """An existing name (any case), an address of another organisation, or a bad address are refused, changing nothing."""
    create_org(tmp_path)
    assert refused(tmp_path, "org", "create", "customer gmbh", "--commercial", "a@new.example",
                   "--technical", "b@new.example") == "organisation 'Customer GmbH' already exists"
    message = refused(tmp_path, "org", "create", "Second AG", "--commercial", "a@new.example",
                      "--technical", TECH.upper())
    assert message == (f"address '{TECH}' already belongs to organisation '{ORG}'; a person who is a contact "
                       "for a second organisation needs a second address")
    assert refused(tmp_path, "org", "create", "Second AG", "--commercial", "not-an-address",
                   "--technical", "b@new.example") == "'not-an-address' is not an e-mail address"
    assert [org["name"] for org in ok(tmp_path, "orgs")] == [ORG]
    assert len(outbox(tmp_path)) == 2 and len(audit(tmp_path)) == 3


def test_org_show_lists_members_contacts_vms_and_warnings(tmp_path: Path) -> None:
    """``org show`` gives members with roles, primary and monitoring contacts, VMs and the warnings, as JSON and text."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "bob@customer.example", "--org", ORG)
    ok(tmp_path, "monitoring", "set", "bob@customer.example")
    ok(tmp_path, "vm", "add", "de-fr-srv-0815", ORG)
    view = ok(tmp_path, "org", "show", "customer gmbh")
    assert [(u["address"], u["role"], u["authorised"], u["monitoring_contact"], u["primary_contact"])
            for u in view["members"]] == [
        ("bob@customer.example", "user", False, True, False),
        (CHEF, "manager", True, False, False),
        (TECH, "manager", True, False, True),
    ]
    assert view["monitoring_contacts"] == ["bob@customer.example"]
    assert view["vms"] == ["de-fr-srv-0815"]
    assert view["warnings"] == []
    text = run(tmp_path, "org", "show", ORG).stdout
    assert f"primary contact: {TECH}" in text and "monitoring contacts: bob@customer.example" in text
    assert "VMs: de-fr-srv-0815" in text and "warning" not in text


def test_org_show_unknown_organisation(tmp_path: Path) -> None:
    """``org show`` of a name nobody created is an error naming it."""
    assert refused(tmp_path, "org", "show", "Nobody AG") == "unknown organisation 'Nobody AG'"


def test_orgs_lists_every_organisation_with_its_warnings(tmp_path: Path) -> None:
    """``orgs`` lists all organisations; one left without authorised contacts says so."""
    create_org(tmp_path)
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    ok(tmp_path, "user", "deauthorise", "t@second.example")
    ok(tmp_path, "user", "deauthorise", "c@second.example")
    rows = ok(tmp_path, "orgs")
    assert [(row["name"], row["warnings"]) for row in rows] == [
        (ORG, ["no-monitoring-contact"]),
        ("Second AG", ["no-authorised-contact", "no-monitoring-contact"]),
    ]
    lines = run(tmp_path, "orgs").stdout.splitlines()
    assert lines[0].split() == ["NAME", "PRIMARY", "AUTHORISED", "MONITORING", "MEMBERS", "VMS", "WARNINGS"]
    assert "Second AG" in lines[2] and "no-authorised-contact" in lines[2]


# -- users -----------------------------------------------------------------------------------------------------


def test_user_add_registers_a_member_and_sends_a_verification_link(tmp_path: Path) -> None:
    """``user add`` makes a member with the given role, authorisation and language, and mails the link in that language."""
    create_org(tmp_path)
    user = ok(tmp_path, "user", "add", "Bob@Customer.example", "--org", "customer gmbh", "--manager",
              "--authorised", "--language", "en", "--name", "Bob Builder")
    assert {k: user[k] for k in ("address", "name", "status", "organisation", "role", "authorised", "language")} == {
        "address": "bob@customer.example", "name": "Bob Builder", "status": "active", "organisation": ORG,
        "role": "manager", "authorised": True, "language": "en"}
    mail = outbox(tmp_path)[-1]
    assert (mail.kind, mail.rcpt_to) == ("verify", "bob@customer.example")
    assert mail.subject == f"Your access to the support desk for {ORG}"
    assert mail.body.startswith("Hello Bob Builder,") and LINK.search(mail.body)


def test_user_add_refuses_an_address_of_another_organisation(tmp_path: Path) -> None:
    """An address is unique across organisations: adding it to a second one says a second address is needed."""
    create_org(tmp_path)
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    message = refused(tmp_path, "user", "add", CHEF.upper(), "--org", "Second AG")
    assert message == (f"address '{CHEF}' already belongs to organisation '{ORG}'; a person who is a contact "
                       "for a second organisation needs a second address")
    assert refused(tmp_path, "user", "add", CHEF, "--org", ORG) == f"user '{CHEF}' already belongs to organisation '{ORG}'"


async def test_user_add_of_a_known_address_without_organisation_points_to_assign(tmp_path: Path) -> None:
    """An address met in a mail is already a user: ``user add`` says to use ``user assign``."""
    create_org(tmp_path)
    await open_ticket(tmp_path, "eve@customer.example")
    assert refused(tmp_path, "user", "add", "eve@customer.example", "--org", ORG) == (
        "address 'eve@customer.example' is already known (unverified, no organisation): "
        "use 'mailticketd user assign eve@customer.example --org ORGANISATION'")


def test_user_add_to_an_unknown_organisation(tmp_path: Path) -> None:
    """``user add`` to an organisation nobody created is an error naming it."""
    assert refused(tmp_path, "user", "add", "a@b.example", "--org", "Nobody AG") == "unknown organisation 'Nobody AG'"


async def test_user_assign_puts_an_unverified_user_into_an_organisation(tmp_path: Path) -> None:
    """``user assign`` moves an address met in a mail into an organisation and sends it a verification link."""
    create_org(tmp_path)
    await open_ticket(tmp_path, "eve@customer.example")
    before = len(outbox(tmp_path))
    user = ok(tmp_path, "user", "assign", "EVE@customer.example", "--org", ORG, "--manager", "--authorised")
    assert (user["organisation"], user["role"], user["authorised"], user["status"]) == (ORG, "manager", True,
                                                                                         "active")
    assert [(m.kind, m.rcpt_to) for m in outbox(tmp_path)[before:]] == [("verify", "eve@customer.example")]
    assert refused(tmp_path, "user", "assign", "eve@customer.example", "--org", "Second AG") == (
        "unknown organisation 'Second AG'")
    assert refused(tmp_path, "user", "assign", "nobody@x.example", "--org", ORG) == "unknown user 'nobody@x.example'"
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    assert "needs a second address" in refused(tmp_path, "user", "assign", "eve@customer.example", "--org",
                                               "Second AG")


def test_user_authorise_and_deauthorise(tmp_path: Path) -> None:
    """``user authorise`` makes a member an authorised contact; ``user deauthorise`` withdraws it."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "bob@customer.example", "--org", ORG)
    assert ok(tmp_path, "user", "authorise", "bob@customer.example")["authorised"] is True
    assert "bob@customer.example" in ok(tmp_path, "org", "show", ORG)["authorised_contacts"]
    assert ok(tmp_path, "user", "deauthorise", "bob@customer.example")["authorised"] is False
    assert refused(tmp_path, "user", "authorise", "nobody@x.example") == "unknown user 'nobody@x.example'"


def test_temporary_authorisation_for_an_organisation_without_authorised_contacts(tmp_path: Path) -> None:
    """``user authorise --temporary --until --note`` is only for an organisation without authorised contact."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "md@customer.example", "--org", ORG)
    args = ("user", "authorise", "md@customer.example", "--temporary", "--until", "2999-12-31",
            "--note", "register extract HRB 4711: managing director")
    assert refused(tmp_path, *args) == (
        f"organisation '{ORG}' has authorised contacts ({CHEF}, {TECH}): "
        "a temporary authorisation is only for an organisation without any")
    ok(tmp_path, "user", "deactivate", CHEF)
    ok(tmp_path, "user", "deactivate", TECH)
    user = ok(tmp_path, *args)
    assert (user["authorised"], user["authorised_until"], user["authorisation_note"]) == (
        True, "2999-12-31", "register extract HRB 4711: managing director")
    assert ok(tmp_path, "org", "show", ORG)["authorised_contacts"] == ["md@customer.example"]


def test_temporary_authorisation_refusals(tmp_path: Path) -> None:
    """A temporary authorisation needs --until in the future as YYYY-MM-DD and --note; a bad date is named."""
    create_org(tmp_path)
    ok(tmp_path, "user", "deauthorise", CHEF)
    ok(tmp_path, "user", "deauthorise", TECH)
    base = ("user", "authorise", CHEF, "--temporary")
    assert refused(tmp_path, *base, "--until", "2999-01-01") == "--temporary needs --until YYYY-MM-DD and --note TEXT"
    assert refused(tmp_path, *base, "--until", "2000-01-01", "--note", "x") == (
        "the end date 2000-01-01 is not in the future")
    assert refused(tmp_path, "user", "authorise", CHEF, "--until", "2999-01-01") == (
        "--until and --note belong to a temporary authorisation: add --temporary")
    bad = run(tmp_path, *base, "--until", "31.12.2999", "--note", "x")
    assert bad.returncode == 2 and "bad date '31.12.2999' — expected YYYY-MM-DD" in bad.stderr


def test_user_role(tmp_path: Path) -> None:
    """``user role ADDR manager|user`` only confirms the role that goes with the authorisation, else names the
    command that changes it; an unknown role is refused by the parser."""
    create_org(tmp_path)
    assert ok(tmp_path, "user", "role", CHEF, "manager")["role"] == "manager"
    assert refused(tmp_path, "user", "role", CHEF, "user") == (
        f"user '{CHEF}' is an authorised contact, and authorised contacts are managers: "
        f"use 'mailticketd user deauthorise {CHEF}'")
    assert ok(tmp_path, "user", "deauthorise", CHEF)["role"] == "user"
    assert ok(tmp_path, "org", "show", ORG)["managers"] == [TECH]
    assert run(tmp_path, "user", "role", CHEF, "boss").returncode == 2


async def test_user_deactivate_keeps_the_user_and_their_tickets(tmp_path: Path) -> None:
    """``user deactivate`` marks the user inactive and never deletes them: their ticket stays with the organisation."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "bob@customer.example", "--org", ORG)
    await open_ticket(tmp_path, "bob@customer.example")
    user = ok(tmp_path, "user", "deactivate", "bob@customer.example")
    assert (user["status"], user["authorised"], user["asked_for_replacement"]) == ("inactive", False, [])
    assert [t["organisation"] for t in ok(tmp_path, "tickets")] == [ORG]
    assert ok(tmp_path, "user", "show", "bob@customer.example")["status"] == "inactive"
    assert refused(tmp_path, "user", "role", "bob@customer.example", "manager") == (
        f"user 'bob@customer.example' is inactive (has left '{ORG}')")


def test_primary_contact_deactivated_asks_the_authorised_contacts(tmp_path: Path) -> None:
    """Deactivating the primary contact flags the organisation and mails its authorised contacts for a replacement."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "bob@customer.example", "--org", ORG)  # not authorised: not asked
    before = len(outbox(tmp_path))
    user = ok(tmp_path, "user", "deactivate", TECH)
    assert user["asked_for_replacement"] == [CHEF]
    view = ok(tmp_path, "org", "show", ORG)
    assert view["primary_contact"] is None and view["flags"] == ["primary-contact-left"]
    assert view["warnings"][:2] == ["primary-contact-left", "no-primary-contact"]
    [mail] = outbox(tmp_path)[before:]
    assert (mail.kind, mail.rcpt_to) == ("contact-left", CHEF)
    assert mail.subject == f"Bitte benennen Sie einen neuen Primärkontakt für {ORG}"
    assert f"{TECH} ist nicht mehr für {ORG} tätig" in mail.body
    assert "und war dort Primärkontakt." in mail.body
    ok(tmp_path, "primary", "set", ORG, CHEF)
    assert ok(tmp_path, "org", "show", ORG)["flags"] == []


async def test_user_delete_refuses_a_user_with_tickets(tmp_path: Path) -> None:
    """A user with tickets is never deleted: ``user delete`` says to deactivate instead and changes nothing."""
    create_org(tmp_path)
    await open_ticket(tmp_path, CHEF)
    assert refused(tmp_path, "user", "delete", CHEF) == (
        f"user '{CHEF}' has tickets and is never deleted: use 'mailticketd user deactivate {CHEF}' instead")
    assert ok(tmp_path, "user", "show", CHEF)["status"] == "active"
    assert [entry["action"] for entry in audit(tmp_path)] == ["user.add", "user.add", "org.create"]


def test_user_delete_removes_an_address_entered_by_mistake(tmp_path: Path) -> None:
    """A user without tickets who is no primary contact can be deleted; the audit log keeps what it was."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "bbo@customer.example", "--org", ORG)
    assert refused(tmp_path, "user", "delete", TECH) == (
        f"user '{TECH}' is the primary contact of '{ORG}': set another primary contact first")
    assert ok(tmp_path, "user", "delete", "bbo@customer.example")["deleted"] is True
    assert refused(tmp_path, "user", "show", "bbo@customer.example") == "unknown user 'bbo@customer.example'"
    last = audit(tmp_path)[-1]
    assert (last["action"], last["subject"], last["after"]) == ("user.delete", "bbo@customer.example", None)
    assert last["before"]["organisation"] == ORG


# -- contacts ----------------------------------------------------------------------------------------------------


def test_primary_set(tmp_path: Path) -> None:
    """``primary set ORG ADDR`` makes a member the primary contact; another organisation's user or an inactive one is refused."""
    create_org(tmp_path)
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    assert ok(tmp_path, "primary", "set", ORG, CHEF)["primary_contact"] == CHEF
    assert refused(tmp_path, "primary", "set", ORG, "t@second.example") == (
        f"user 't@second.example' belongs to organisation 'Second AG', not to '{ORG}': "
        "the primary contact must be a member of the organisation")
    ok(tmp_path, "user", "deactivate", TECH)
    assert refused(tmp_path, "primary", "set", ORG, TECH) == (
        f"user '{TECH}' is inactive and cannot be the primary contact")
    assert refused(tmp_path, "primary", "set", "Nobody AG", CHEF) == "unknown organisation 'Nobody AG'"


def test_monitoring_set_and_unset(tmp_path: Path) -> None:
    """``monitoring set/unset ADDR`` flags a member as monitoring contact and clears it."""
    create_org(tmp_path)
    assert ok(tmp_path, "monitoring", "set", TECH)["monitoring_contact"] is True
    assert ok(tmp_path, "org", "show", ORG)["monitoring_contacts"] == [TECH]
    assert ok(tmp_path, "monitoring", "unset", TECH)["monitoring_contact"] is False
    assert ok(tmp_path, "org", "show", ORG)["warnings"] == ["no-monitoring-contact"]
    assert refused(tmp_path, "monitoring", "set", "nobody@x.example") == "unknown user 'nobody@x.example'"


def test_monitoring_contact_deactivated_asks_the_authorised_contacts(tmp_path: Path) -> None:
    """Deactivating a monitoring contact flags the organisation and asks its authorised contacts; a new one clears the flag."""
    create_org(tmp_path)
    ok(tmp_path, "user", "add", "mon@customer.example", "--org", ORG)
    ok(tmp_path, "monitoring", "set", "mon@customer.example")
    before = len(outbox(tmp_path))
    ok(tmp_path, "user", "deactivate", "mon@customer.example")
    assert ok(tmp_path, "org", "show", ORG)["flags"] == ["monitoring-contact-left"]
    mails = outbox(tmp_path)[before:]
    assert sorted((m.kind, m.rcpt_to) for m in mails) == [("contact-left", CHEF), ("contact-left", TECH)]
    assert all(m.subject == f"Bitte benennen Sie einen neuen Monitoring-Kontakt für {ORG}" for m in mails)
    ok(tmp_path, "monitoring", "set", CHEF)
    assert ok(tmp_path, "org", "show", ORG)["flags"] == []


# -- VMs -----------------------------------------------------------------------------------------------------------


def test_vm_add(tmp_path: Path) -> None:
    """``vm add NAME ORG`` adds a lower-cased VM; a bad name, an unknown organisation or a known VM is refused."""
    create_org(tmp_path)
    assert ok(tmp_path, "vm", "add", "DE-FR-SRV-0815", ORG) == {"name": "de-fr-srv-0815", "organisation": ORG}
    assert refused(tmp_path, "vm", "add", "webserver", ORG) == (
        "'webserver' is not a VM name (expected the pattern de-[a-z]{2}-srv-[0-9]{4})")
    assert refused(tmp_path, "vm", "add", "de-fr-srv-0816", "Nobody AG") == "unknown organisation 'Nobody AG'"
    assert refused(tmp_path, "vm", "add", "de-fr-srv-0815", ORG) == (
        f"VM 'de-fr-srv-0815' is already in the inventory of '{ORG}'")


def test_vm_import_adds_all_rows_or_none(tmp_path: Path) -> None:
    """``vm import FILE.csv`` adds every row (header optional); a bad row stops it, naming line and value."""
    create_org(tmp_path)
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    ok(tmp_path, "vm", "add", "de-fr-srv-0001", ORG)
    bad = tmp_path / "bad.csv"
    bad.write_text("de-fr-srv-0002,Customer GmbH\nde-fr-srv-0003,Nobody AG\n", encoding="utf-8")
    assert refused(tmp_path, "vm", "import", str(bad)) == f"{bad}, line 2: unknown organisation 'Nobody AG'"
    bad.write_text("name,organisation\nde-fr-srv-0002,Customer GmbH\n\nde-fr-0003,Second AG\n", encoding="utf-8")
    assert refused(tmp_path, "vm", "import", str(bad)) == (
        f"{bad}, line 4: 'de-fr-0003' is not a VM name (expected the pattern de-[a-z]{{2}}-srv-[0-9]{{4}})")
    bad.write_text("de-fr-srv-0001,Second AG\n", encoding="utf-8")
    assert refused(tmp_path, "vm", "import", str(bad)) == (
        f"{bad}, line 1: VM 'de-fr-srv-0001' is already in the inventory of '{ORG}', not 'Second AG'")
    assert [vm["name"] for vm in ok(tmp_path, "vms")] == ["de-fr-srv-0001"]

    good = tmp_path / "vms.csv"
    good.write_text("name,organisation\nDE-FR-SRV-0002,customer gmbh\nde-be-srv-0003,Second AG\n"
                    "de-fr-srv-0001,Customer GmbH\n", encoding="utf-8")
    result = ok(tmp_path, "vm", "import", str(good))
    assert result == {"added": [{"name": "de-fr-srv-0002", "organisation": ORG},
                                {"name": "de-be-srv-0003", "organisation": "Second AG"}],
                      "unchanged": [{"name": "de-fr-srv-0001", "organisation": ORG}]}
    assert refused(tmp_path, "vm", "import", str(tmp_path / "missing.csv")) == (
        f"cannot read '{tmp_path / 'missing.csv'}': No such file or directory")


def test_vms_lists_the_inventory(tmp_path: Path) -> None:
    """``vms`` lists every VM with its organisation; ``--org`` narrows it to one."""
    create_org(tmp_path)
    create_org(tmp_path, "Second AG", technical="t@second.example", commercial="c@second.example")
    ok(tmp_path, "vm", "add", "de-fr-srv-0002", "Second AG")
    ok(tmp_path, "vm", "add", "de-fr-srv-0001", ORG)
    assert ok(tmp_path, "vms") == [{"name": "de-fr-srv-0001", "organisation": ORG},
                                   {"name": "de-fr-srv-0002", "organisation": "Second AG"}]
    assert ok(tmp_path, "vms", "--org", "second ag") == [{"name": "de-fr-srv-0002", "organisation": "Second AG"}]
    assert run(tmp_path, "vms").stdout.splitlines()[0].split() == ["NAME", "ORGANISATION"]
    assert refused(tmp_path, "vms", "--org", "Nobody AG") == "unknown organisation 'Nobody AG'"


# -- the audit log ---------------------------------------------------------------------------------------------


def test_audit_log_records_who_when_what_and_before_after(tmp_path: Path) -> None:
    """Every change writes an entry with actor, time, action, subject and the states before and after."""
    create_org(tmp_path)
    ok(tmp_path, "user", "deauthorise", CHEF)
    entries = audit(tmp_path)
    assert [(e["actor"], e["action"], e["subject"]) for e in entries] == [
        ("alice", "user.add", TECH), ("alice", "user.add", CHEF), ("alice", "org.create", ORG),
        ("alice", "user.deauthorise", CHEF)]
    create, role = entries[2], entries[3]
    assert create["before"] is None
    assert create["after"] == {"name": ORG, "primary_contact": TECH, "flags": []}
    assert (role["before"]["role"], role["after"]["role"]) == ("manager", "user")
    assert (role["before"]["authorised"], role["after"]["authorised"]) == (True, False)
    assert {k: v for k, v in role["after"].items() if k not in ("role", "authorised")} == {
        k: v for k, v in role["before"].items() if k not in ("role", "authorised")}
    assert entries[0]["at"] <= entries[3]["at"] and entries[3]["at"].endswith("+00:00")
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    text = run(tmp_path, "audit").stdout.splitlines()
    assert text[0].split() == ["AT", "ACTOR", "ACTION", "SUBJECT", "CHANGE"]
    assert 'role: "manager" → "user"' in text[-1]


def test_audit_actor_defaults_to_sudo_user_then_login_name(tmp_path: Path) -> None:
    """Without ``--actor`` the entry names ``$SUDO_USER``, else the login name; a change that changes nothing is not logged."""
    create_org(tmp_path)
    assert run(tmp_path, "user", "deauthorise", CHEF, actor=None, env={"SUDO_USER": "bob"}).returncode == 0
    assert run(tmp_path, "user", "authorise", CHEF, actor=None,
               env={"SUDO_USER": "", "LOGNAME": "carol", "USER": "carol"}).returncode == 0
    assert run(tmp_path, "user", "authorise", CHEF).returncode == 0  # already authorised
    assert [e["actor"] for e in audit(tmp_path)][3:] == ["bob", "carol"]
    assert [e["subject"] for e in ok(tmp_path, "audit", "--subject", CHEF.upper())] == [CHEF] * 3


# -- end to end ------------------------------------------------------------------------------------------------


async def test_org_create_mails_reach_the_maildir_through_the_running_daemon(tmp_path: Path) -> None:
    """After ``org create`` the daemon's delivery worker delivers both verification mails, links included."""
    create_org(tmp_path)
    async with Daemon(daemon_config(tmp_path, outbound={"poll_interval": 0.1})) as daemon:
        new = tmp_path / "maildir" / "new"
        for _ in range(200):
            if new.exists() and len(list(new.iterdir())) == 2:
                break
            daemon.delivery.wake()
            await asyncio.sleep(0.05)
    files = sorted(new.iterdir()) if new.exists() else []
    assert len(files) == 2
    delivered = {}
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        delivered[str(message["Delivered-To"])] = message.get_content()  # type: ignore[union-attr]
    assert sorted(delivered) == [CHEF, TECH]
    assert all(LINK.search(body) for body in delivered.values())


def test_the_desks_own_addresses_cannot_become_customers(tmp_path: Path) -> None:
    """``user add`` of a support or operator address is refused, so the desk never mails itself."""
    from tests.process import cli as run
    config = tmp_path / "own.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path / "db.sqlite3"}"\n'
                      '[mail]\naddresses = ["support@example.net"]\n[operators]\naddresses = ["op@provider.example"]\n',
                      encoding="utf-8")
    assert run("--config", str(config), "migrate").returncode == 0
    assert run("--config", str(config), "org", "create", "Kunde GmbH", "--commercial", "a@kunde.example",
               "--technical", "b@kunde.example").returncode == 0
    for address in ("Support+x@example.net", "op@provider.example"):
        refused = run("--config", str(config), "user", "add", address, "--org", "Kunde GmbH")
        assert refused.returncode == 1 and "the desk's own or an operator's" in refused.stderr
