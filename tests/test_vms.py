"""VM names are found in the subject and the new text, linked to the ticket, and flagged for operators."""

from __future__ import annotations

from mailticketd.app import Daemon
from tests.helpers import make_mail
from tests.test_threading import add_organisation, deliver, ticket, tickets

CUSTOMER = "anna@customer.example"


async def add_vms(daemon: Daemon, organisation: str, names: list[str]) -> None:
    async with daemon.db.transaction() as store:
        found = await store.organisations.by_name(organisation)
        assert found is not None
        for name in names:
            await store.vms.add(name, found.id)


async def test_vm_names_from_subject_and_text_are_linked_lower_cased_once(daemon: Daemon) -> None:
    """``DE-FR-SRV-0815`` in the subject and twice in the text links one VM ``de-fr-srv-0815``, plus the other named."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user"})
    await add_vms(daemon, "Customer GmbH", ["de-fr-srv-0815", "de-mu-srv-0001"])
    body = "de-fr-srv-0815 is slow, and so is de-mu-srv-0001.\nAlso DE-FR-SRV-0815 again."
    await deliver(daemon, make_mail(CUSTOMER, subject="DE-FR-SRV-0815 slow", body=body))
    detail = await ticket(daemon, 10000)
    assert [(vm["name"], vm["flags"]) for vm in detail["vms"]] == [
        ("de-fr-srv-0815", []), ("de-mu-srv-0001", [])]


async def test_vm_of_another_organisation_is_flagged(daemon: Daemon) -> None:
    """A VM the inventory gives to another organisation is linked with the flag ``other-organisation``."""
    await add_organisation(daemon, "Customer GmbH", {CUSTOMER: "user"})
    await add_organisation(daemon, "Other AG", {"x@other.example": "user"})
    await add_vms(daemon, "Other AG", ["de-be-srv-4711"])
    await deliver(daemon, make_mail(CUSTOMER, body="Please reboot de-be-srv-4711."))
    detail = await ticket(daemon, 10000)
    assert detail["vms"] == [{"name": "de-be-srv-4711", "organisation": "Other AG",
                              "flags": ["other-organisation"]}]


async def test_unknown_vm_is_flagged_unknown(daemon: Daemon) -> None:
    """A name that matches the pattern but is not in the inventory is linked and flagged ``unknown``."""
    await deliver(daemon, make_mail(CUSTOMER, body="de-xx-srv-9999 is down"))
    assert (await ticket(daemon, 10000))["vms"] == [
        {"name": "de-xx-srv-9999", "organisation": None, "flags": ["unknown"]}]


async def test_vm_names_in_quoted_history_are_not_linked(daemon: Daemon) -> None:
    """A VM named only in the quoted part of a reply is not linked to the ticket."""
    await deliver(daemon, make_mail(CUSTOMER, subject="Question", body="nothing here"))
    body = ("Thanks, that helps.\n\nOn Mon, 2 Feb 2026 at 10:00, Support <support@example.net> wrote:\n"
            "> We looked at de-ab-srv-1234 yesterday.\n")
    await deliver(daemon, make_mail(CUSTOMER, subject="Re: [MH#10000] Question", body=body))
    assert len(await tickets(daemon)) == 1
    assert (await ticket(daemon, 10000))["vms"] == []


async def test_names_glued_to_other_characters_are_not_vms(daemon: Daemon) -> None:
    """``xde-fr-srv-08151`` is not the VM ``de-fr-srv-0815``."""
    await deliver(daemon, make_mail(CUSTOMER, body="see xde-fr-srv-08151 and de-fr-srv-08159"))
    assert (await ticket(daemon, 10000))["vms"] == []


async def test_custom_vm_pattern_from_config(tmp_path) -> None:
    """``[mail] vm_pattern`` replaces the default pattern."""
    from tests.helpers import make_config
    async with Daemon(make_config(tmp_path, mail={"vm_pattern": "vm-[0-9]{3}"})) as daemon:
        await deliver(daemon, make_mail(CUSTOMER, body="VM-123 and de-fr-srv-0815"))
        assert [vm["name"] for vm in (await ticket(daemon, 10000))["vms"]] == ["vm-123"]
