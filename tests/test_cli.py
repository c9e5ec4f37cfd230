"""The admin CLI: readable tables, and stable JSON for scripts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import structlog

from mailticketd.app import Daemon
from tests.helpers import make_config, make_mail, send, settle
from tests.process import cli


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli.toml"
    path.write_text(f'[storage]\ndatabase = "{tmp_path / "mailticketd.sqlite3"}"\n'
                    '[mail]\naddresses = ["support@example.net", "helpdesk@example.net"]\n', encoding="utf-8")
    return path


async def populate(tmp_path: Path) -> None:
    """Two tickets: one from an organisation member with a CC, a VM and an attachment; one from a stranger."""
    async with Daemon(make_config(tmp_path)) as daemon:
        async with daemon.db.transaction() as store:
            organisation = await store.organisations.create("Customer GmbH")
            await store.users.create("anna@customer.example", organisation_id=organisation.id, status="active",
                                     role="manager", authorised=True)
            await store.vms.add("de-fr-srv-0815", organisation.id)
        await send(daemon.smtp_port, make_mail(
            "anna@customer.example", subject="Server down", cc="bob@customer.example",
            body="de-fr-srv-0815 is down.", attachments=[("log.txt", "text/plain", b"kernel panic\n")]))
        await send(daemon.smtp_port, make_mail("eve@elsewhere.example", subject="Hallo Welt"))
        await settle(daemon)


async def test_tickets_json_is_a_list_with_the_promised_fields(tmp_path: Path) -> None:
    """``tickets --json`` lists number, exact tag, subject, status, organisation and requester."""
    await populate(tmp_path)
    result = cli("--config", str(config_file(tmp_path)), "tickets", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [{k: row[k] for k in ("number", "tag", "subject", "status", "organisation", "requester")}
            for row in rows] == [
        {"number": 10000, "tag": "[MH#10000]", "subject": "Server down", "status": "new",
         "organisation": "Customer GmbH", "requester": "anna@customer.example"},
        {"number": 10001, "tag": "[MH#10001]", "subject": "Hallo Welt", "status": "new",
         "organisation": None, "requester": "eve@elsewhere.example"},
    ]


async def test_tickets_table_is_readable(tmp_path: Path) -> None:
    """Without ``--json`` the tickets come as an aligned table with a heading."""
    await populate(tmp_path)
    result = cli("--config", str(config_file(tmp_path)), "tickets")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TAG", "STATUS", "ORGANISATION", "REQUESTER", "SUBJECT"]
    assert "[MH#10000]" in lines[1] and "Customer GmbH" in lines[1] and "Server down" in lines[1]
    assert "[MH#10001]" in lines[2] and "Hallo Welt" in lines[2]


async def test_ticket_show_json_has_participants_vms_and_articles(tmp_path: Path) -> None:
    """``ticket show N --json`` gives participants, VMs with flags and articles with attachments."""
    await populate(tmp_path)
    result = cli("--config", str(config_file(tmp_path)), "ticket", "show", "10000", "--json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["tag"] == "[MH#10000]"
    assert [(p["address"], p["status"], p["role"]) for p in view["participants"]] == [
        ("anna@customer.example", "active", "requester"), ("bob@customer.example", "unverified", "cc")]
    assert view["vms"] == [{"name": "de-fr-srv-0815", "organisation": "Customer GmbH", "flags": []}]
    [article] = view["articles"]
    assert (article["author"], article["author_status"], article["kind"]) == (
        "anna@customer.example", "authorised", "mail")
    assert article["visible_text"].strip() == "de-fr-srv-0815 is down."
    assert "de-fr-srv-0815 is down." in article["text"]
    [attachment] = article["attachments"]
    assert attachment["name"] == "log.txt" and attachment["size"] == len(b"kernel panic\n")
    assert len(attachment["sha256"]) == 64


async def test_ticket_show_text_and_unknown_number(tmp_path: Path) -> None:
    """The readable view shows author status and text; an unknown number is an error naming it."""
    await populate(tmp_path)
    shown = cli("--config", str(config_file(tmp_path)), "ticket", "show", "10001")
    assert "eve@elsewhere.example (unverified)" in shown.stdout
    missing = cli("--config", str(config_file(tmp_path)), "ticket", "show", "424242")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "mailticketd: no ticket with number 424242"
    bad = cli("--config", str(config_file(tmp_path)), "ticket", "show", "abc")
    assert bad.returncode == 2 and "'abc' is not a ticket number or tag" in bad.stderr


async def test_ticket_show_takes_the_subject_tag_as_well_as_the_number(tmp_path: Path) -> None:
    """``ticket show '[MH#10000]'`` and ``MH#10000`` show ticket 10000; another desk's tag is refused by name."""
    await populate(tmp_path)
    for reference in ("[MH#10000]", "mh#10000", "10000"):
        shown = cli("ticket", "show", reference, "--json", "--config", str(config_file(tmp_path)))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["subject"] == "Server down"
    other = cli("--config", str(config_file(tmp_path)), "ticket", "show", "[XY#10000]")
    assert other.returncode == 1 and "'XY#10000' is not a tag of this desk" in other.stderr


async def test_ticket_show_gives_a_vms_inventory_state_of_now(tmp_path: Path) -> None:
    """A VM unknown when the mail came shows its organisation once it is in the inventory; the old flag stays."""
    async with Daemon(make_config(tmp_path)) as daemon:
        async with daemon.db.transaction() as store:
            await store.organisations.create("Customer GmbH")
        await send(daemon.smtp_port, make_mail("eve@elsewhere.example", body="de-xx-srv-4711 is slow"))
        await settle(daemon)
    before = json.loads(cli("--config", str(config_file(tmp_path)), "ticket", "show", "10000", "--json").stdout)
    assert before["vms"] == [{"name": "de-xx-srv-4711", "organisation": None, "flags": ["unknown"]}]
    added = cli("--config", str(config_file(tmp_path)), "--actor", "alice", "vm", "add", "de-xx-srv-4711",
                "Customer GmbH")
    assert added.returncode == 0, added.stderr
    after = json.loads(cli("--config", str(config_file(tmp_path)), "ticket", "show", "10000", "--json").stdout)
    assert after["vms"] == [{"name": "de-xx-srv-4711", "organisation": "Customer GmbH", "flags": ["unknown"]}]
    text = cli("--config", str(config_file(tmp_path)), "ticket", "show", "10000").stdout
    assert "organisation: the inventory now; flags: when the mail came" in text


def test_no_arguments_list_every_command_with_a_description() -> None:
    """``mailticketd`` alone prints each command with a line saying what it does; each ``--help`` describes itself."""
    result = cli()
    assert result.returncode == 2
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("    ")}
    for command in ("serve", "migrate", "status", "tickets", "ticket", "org", "user", "vm", "audit"):
        assert command in listed, result.stdout
    assert "create the database if there is none" in result.stdout
    for command in (["ticket", "show"], ["user", "add"], ["status"], ["migrate"], ["inbox", "retry"]):
        helped = cli(*command, "--help")
        assert helped.returncode == 0
        description = helped.stdout.split("\n\n")[1]
        assert not description.startswith(("positional", "options")), (command, helped.stdout)


async def test_commands_refuse_a_database_that_is_not_there(tmp_path: Path) -> None:
    """A staff command on a missing database creates nothing and says how to make one; ``migrate`` makes it."""
    path = config_file(tmp_path)
    database = tmp_path / "mailticketd.sqlite3"
    missing = cli("tickets", "--config", str(path))
    assert missing.returncode == 1
    assert f"no database at {database}" in missing.stderr and "mailticketd migrate" in missing.stderr
    assert not database.exists()
    created = cli("migrate", "--json", "--config", str(path))
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"] is True and database.exists()
    again = cli("migrate", "--json", "--config", str(path))
    assert json.loads(again.stdout)["created"] is False
    assert cli("tickets", "--json", "--config", str(path)).stdout.strip() == "[]"


def test_relative_paths_mean_the_same_files_wherever_the_cli_runs(tmp_path: Path) -> None:
    """Relative paths in a config are the state directory's (else the config folder's), not the current folder's."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "site.toml").write_text('[storage]\ndatabase = "desk.sqlite3"\n', encoding="utf-8")
    (etc / "state.toml").write_text(f'[storage]\ndatabase = "var/desk.sqlite3"\n'
                                    f'state_directory = "{tmp_path / "state"}"\n', encoding="utf-8")
    assert cli("--config", str(etc / "site.toml"), "migrate").returncode == 0
    assert (etc / "desk.sqlite3").exists()
    assert cli("--config", str(etc / "state.toml"), "migrate").returncode == 0
    assert (tmp_path / "state" / "var" / "desk.sqlite3").exists()
    elsewhere = cli("--config", "site.toml", "tickets", cwd=etc)  # a relative --config, another folder
    assert elsewhere.returncode == 0, elsewhere.stderr


async def test_users_json(tmp_path: Path) -> None:
    """``users --json`` lists address, status, organisation, role and authorised for each user."""
    await populate(tmp_path)
    rows = json.loads(cli("--config", str(config_file(tmp_path)), "users", "--json").stdout)
    assert [{k: r[k] for k in ("address", "status", "organisation", "role", "authorised")} for r in rows] == [
        {"address": "anna@customer.example", "status": "active", "organisation": "Customer GmbH",
         "role": "manager", "authorised": True},
        {"address": "bob@customer.example", "status": "unverified", "organisation": None, "role": "user",
         "authorised": False},
        {"address": "eve@elsewhere.example", "status": "unverified", "organisation": None, "role": "user",
         "authorised": False},
    ]


async def test_failed_mail_is_listed_with_its_reason_and_retried_after_the_fix(tmp_path: Path) -> None:
    """A mail that fails processing is kept as failed with the reason; ``inbox retry ID`` processes it once fixed."""
    config = make_config(tmp_path, inbox={"max_attempts": 1})
    path = config_file(tmp_path)
    async with Daemon(config) as daemon:
        with sqlite3.connect(config.storage.database) as conn:  # a broken store: every article insert fails
            conn.execute("CREATE TRIGGER broken BEFORE INSERT ON articles "
                         "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
        await send(daemon.smtp_port, make_mail(subject="Will fail first"))
        await settle(daemon)

        listed = json.loads(cli("--config", str(path), "inbox", "--json").stdout)
        assert [(row["status"], row["reason"]) for row in listed] == [
            ("failed", "IntegrityError: disk quota exceeded")]
        with sqlite3.connect(config.storage.database) as conn:  # operators are told, with the way out
            told = conn.execute("SELECT rcpt_to, raw FROM outbox WHERE kind = 'inbox-failed'").fetchall()
        assert [row[0] for row in told] == ["op@provider.example"]
        assert f"inbox retry {listed[0]['id']}".encode() in told[0][1]
        assert "disk quota exceeded" in cli("--config", str(path), "inbox").stdout

        with sqlite3.connect(config.storage.database) as conn:
            conn.execute("DROP TRIGGER broken")
        retried = cli("--config", str(path), "inbox", "retry", str(listed[0]["id"]))
        assert retried.returncode == 0, retried.stderr
        daemon.worker.wake()
        await settle(daemon)
        async with daemon.db.read() as store:
            assert [t.subject for t in await store.tickets.list()] == ["Will fail first"]
    assert json.loads(cli("--config", str(path), "inbox", "--json").stdout) == []
    again = cli("--config", str(path), "inbox", "retry", str(listed[0]["id"]))
    assert again.returncode == 1 and "is done, not failed" in again.stderr
    assert "no inbox row with id 999" in cli("--config", str(path), "inbox", "retry", "999").stderr


async def test_failed_mail_is_kept_as_failed_when_telling_the_operators_fails_too(tmp_path: Path) -> None:
    """When the operators' notice cannot be written, the mail is still listed as failed with its reason (not left
    pending to fail again and again), and the log says the notice failed."""
    config = make_config(tmp_path, inbox={"max_attempts": 1})
    with structlog.testing.capture_logs() as logs:
        async with Daemon(config) as daemon:
            with sqlite3.connect(config.storage.database) as conn:  # articles and the outbox both broken
                conn.execute("CREATE TRIGGER broken BEFORE INSERT ON articles "
                             "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
                conn.execute("CREATE TRIGGER mute BEFORE INSERT ON outbox "
                             "BEGIN SELECT RAISE(ABORT, 'outbox unwritable'); END")
            await send(daemon.smtp_port, make_mail(subject="Will fail twice"))
            await settle(daemon)
    listed = json.loads(cli("--config", str(config_file(tmp_path)), "inbox", "--json").stdout)
    assert [(row["status"], row["reason"]) for row in listed] == [("failed", "IntegrityError: disk quota exceeded")]
    assert [entry["event"] for entry in logs if entry["event"].startswith("mail.failed")] == [
        "mail.failed_notice_error", "mail.failed"]
    with sqlite3.connect(config.storage.database) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
