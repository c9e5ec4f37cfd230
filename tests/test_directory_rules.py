"""The directory's lifecycle rules: temporary authorisation, who acts on which ticket, contacts who leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.config import Config
from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.directory.errors import AdminError
from mailticketd.directory.models import User
from mailticketd.directory.policy import author_status, expires_soon, has_expired, is_authorised, may_act_on
from mailticketd.services import make_mailer
from mailticketd.storage import Database, database_for
from mailticketd.tickets.models import Ticket
from mailticketd.views import organisation_view
from tests.helpers import make_config, make_mail, send, settle

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=timezone.utc)
ORG = "Customer GmbH"


def person(**fields: object) -> User:
    values: dict[str, object] = dict(id=1, address="anna@customer.example", name="", organisation_id=7,
                                     organisation=ORG, status="active", role="user", authorised=True,
                                     monitoring_contact=False, language=None)
    values.update(fields)
    return User(**values)  # type: ignore[arg-type]


def ticket(organisation_id: int | None = 7, requester_id: int | None = 99) -> Ticket:
    return Ticket(id=1, number=10000, subject="Server down", status="open", organisation_id=organisation_id,
                  requester_id=requester_id, created_at="", updated_at="")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with database_for(make_config(tmp_path).storage) as database:
        yield database


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


async def change(db: Database, config: Config, operation: str, *args: object, now: datetime = NOW,
                 **kwargs: object) -> object:
    """Run one staff operation in its own transaction, as the CLI does."""
    async with db.transaction() as store:
        admin = DirectoryAdmin(store, config, make_mailer(config), actor="test", now=now)
        return await getattr(admin, operation)(*args, **kwargs)


async def outbox(db: Database) -> list[tuple[str, str]]:
    async with db.read() as store:
        async with store.conn.execute("SELECT kind, rcpt_to FROM outbox ORDER BY id") as cursor:
            return [(kind, rcpt) for kind, rcpt in await cursor.fetchall()]


async def org_view(db: Database, now: datetime = NOW) -> dict[str, object]:
    async with db.read() as store:
        organisation = await store.organisations.by_name(ORG)
        assert organisation is not None
        return await organisation_view(store, organisation, now)


async def onboard(db: Database, config: Config) -> None:
    await change(db, config, "create_organisation", ORG, commercial="chef@customer.example",
                 technical="tech@customer.example")


# -- temporary authorisation ---------------------------------------------------------------------------------


def test_temporary_authorisation_holds_through_its_day_and_ends_by_itself() -> None:
    """A temporary authorisation is valid up to the end of its day (UTC) and ends after it without anyone acting."""
    user = person(authorised_until="2030-06-15", authorisation_note="register extract")
    assert is_authorised(user, NOW)
    assert is_authorised(user, datetime(2030, 6, 15, 23, 59, tzinfo=timezone.utc))
    assert not is_authorised(user, datetime(2030, 6, 16, 0, 0, tzinfo=timezone.utc))
    assert has_expired(user, NOW + timedelta(days=1)) and not has_expired(user, NOW)
    assert is_authorised(person(), NOW + timedelta(days=3650))


def test_inactive_or_unauthorised_users_are_never_authorised() -> None:
    """An inactive user or one without the flag is no authorised contact, whatever the date."""
    assert not is_authorised(person(status="inactive"), NOW)
    assert not is_authorised(person(authorised=False, authorised_until="2999-01-01"), NOW)


def test_temporary_authorisation_about_to_expire_is_noticed() -> None:
    """Within seven days of its end a temporary authorisation counts as about to expire."""
    assert expires_soon(person(authorised_until="2030-06-20"), NOW)
    assert not expires_soon(person(authorised_until="2030-07-20"), NOW)
    assert not expires_soon(person(authorised_until=None), NOW)
    assert not expires_soon(person(authorised_until="2030-06-14"), NOW)


def test_author_status_after_the_temporary_authorisation_ended_is_plain_user() -> None:
    """Mail from someone whose temporary authorisation ended is labelled as from a normal user."""
    user = person(authorised_until="2030-06-15")
    assert author_status(user, 7, operator=False, now=NOW) == "authorised"
    assert author_status(user, 7, operator=False, now=NOW + timedelta(days=1)) == "user"


async def test_organisation_warns_before_and_after_a_temporary_authorisation_ends(db: Database,
                                                                                 config: Config) -> None:
    """``org show`` warns while the end is near, and reports no authorised contact once it has passed."""
    await onboard(db, config)
    for address in ("chef@customer.example", "tech@customer.example"):
        await change(db, config, "deauthorise", address)
    await change(db, config, "authorise_temporarily", "chef@customer.example", until=date(2030, 6, 18),
                 note="register extract HRB 4711")
    view = await org_view(db)
    assert view["authorised_contacts"] == ["chef@customer.example"]
    assert "temporary-authorisation-expires:chef@customer.example:2030-06-18" in view["warnings"]  # type: ignore
    later = await org_view(db, NOW + timedelta(days=4))
    assert later["authorised_contacts"] == []
    assert {"no-authorised-contact", "temporary-authorisation-expired:chef@customer.example:2030-06-18"} <= set(
        later["warnings"])  # type: ignore[arg-type]


async def test_mail_after_the_temporary_authorisation_ended_is_from_a_normal_user(tmp_path: Path) -> None:
    """The daemon labels a mail from a contact whose temporary authorisation has passed as from a normal user."""
    config = make_config(tmp_path, http={"listen": "127.0.0.1:0"})
    async with Daemon(config) as daemon:
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, config, daemon.services.mailer, actor="test",
                                   now=datetime(2020, 1, 1, tzinfo=timezone.utc))
            await admin.create_organisation(ORG, commercial="chef@customer.example",
                                            technical="tech@customer.example")
            await admin.deauthorise("tech@customer.example")
            await admin.deauthorise("chef@customer.example")
            await admin.authorise_temporarily("chef@customer.example", until=date(2020, 2, 1), note="extract")
        await send(daemon.smtp_port, make_mail("chef@customer.example", subject="New contacts"))
        await settle(daemon)
        async with daemon.db.read() as store:
            [summary] = await store.tickets.list()
            ticket = await store.tickets.by_number(summary.number)
            assert ticket is not None
            [article] = await store.articles.for_ticket(ticket.id)
    assert article.author_status == "user"


async def test_an_expired_temporary_authorisation_may_be_renewed(db: Database, config: Config) -> None:
    """Once a temporary authorisation has ended, the organisation has no authorised contact and a new one is allowed."""
    await onboard(db, config)
    for address in ("chef@customer.example", "tech@customer.example"):
        await change(db, config, "deauthorise", address)
    await change(db, config, "authorise_temporarily", "chef@customer.example", until=date(2030, 6, 18), note="x")
    with pytest.raises(AdminError, match="has authorised contacts"):
        await change(db, config, "authorise_temporarily", "tech@customer.example", until=date(2030, 7, 1),
                     note="y")
    later = NOW + timedelta(days=10)
    user = await change(db, config, "authorise_temporarily", "tech@customer.example", until=date(2030, 7, 30),
                        note="new extract", now=later)
    assert isinstance(user, User) and is_authorised(user, later)


# -- who acts on which ticket ----------------------------------------------------------------------------------


def test_managers_act_on_every_ticket_of_their_organisation() -> None:
    """An active manager may act on any ticket of their organisation, not on another organisation's."""
    manager = person(role="manager")
    assert may_act_on(manager, ticket(), frozenset(), operator=False)
    assert not may_act_on(manager, ticket(organisation_id=8), frozenset(), operator=False)
    assert not may_act_on(person(role="manager", status="inactive"), ticket(), frozenset(), operator=False)


def test_normal_users_act_only_on_their_own_tickets_and_those_they_take_part_in() -> None:
    """A normal user, even an authorised contact, acts only on tickets they opened or take part in."""
    user = person(role="user")
    assert not may_act_on(user, ticket(), frozenset(), operator=False)
    assert may_act_on(user, ticket(), frozenset({user.id}), operator=False)


# -- contacts who leave ----------------------------------------------------------------------------------------


async def test_primary_contact_deactivated_asks_the_authorised_contacts(db: Database, config: Config) -> None:
    """Deactivating the primary contact clears it, flags the organisation and asks every other authorised contact."""
    await onboard(db, config)
    await change(db, config, "add_user", "bob@customer.example", ORG)  # not authorised: not asked
    await change(db, config, "add_user", "sue@customer.example", ORG, authorised=True, language="en")
    before = len(await outbox(db))
    user, asked = await change(db, config, "deactivate", "tech@customer.example")  # type: ignore[misc]
    assert user.status == "inactive" and not user.authorised
    assert asked == ["chef@customer.example", "sue@customer.example"]
    assert (await outbox(db))[before:] == [("contact-left", "chef@customer.example"),
                                           ("contact-left", "sue@customer.example")]
    view = await org_view(db)
    assert view["primary_contact"] is None and view["flags"] == ["primary-contact-left"]
    async with db.read() as store:
        [entry] = [e for e in await store.audit.list(ORG) if e.action == "org.contact-left"]
    assert entry.before and entry.after
    assert (entry.before["primary_contact"], entry.after["primary_contact"]) == ("tech@customer.example", None)


async def test_a_member_leaving_who_held_no_contact_role_asks_nobody(db: Database, config: Config) -> None:
    """Deactivating a user who was neither primary nor monitoring contact flags nothing and mails nobody."""
    await onboard(db, config)
    await change(db, config, "add_user", "bob@customer.example", ORG)
    before = len(await outbox(db))
    _, asked = await change(db, config, "deactivate", "bob@customer.example")  # type: ignore[misc]
    assert asked == [] and len(await outbox(db)) == before
    assert (await org_view(db))["flags"] == []


async def test_an_expired_temporary_contact_is_not_asked(db: Database, config: Config) -> None:
    """The request for a replacement goes only to authorised contacts whose authorisation still holds."""
    await onboard(db, config)
    await change(db, config, "deauthorise", "chef@customer.example")
    await change(db, config, "deactivate", "tech@customer.example")
    await change(db, config, "authorise_temporarily", "chef@customer.example", until=date(2030, 6, 20), note="x")
    await change(db, config, "add_user", "mon@customer.example", ORG)
    await change(db, config, "set_monitoring_contact", "mon@customer.example", True)
    _, asked = await change(db, config, "deactivate", "mon@customer.example",  # type: ignore[misc]
                            now=NOW + timedelta(days=30))
    assert asked == []
    assert set((await org_view(db, NOW + timedelta(days=30)))["flags"]) == {  # type: ignore[arg-type]
        "primary-contact-left", "monitoring-contact-left"}


async def test_a_refused_operation_changes_nothing(db: Database, config: Config) -> None:
    """A VM import with one bad row adds no VM and writes no audit entry."""
    await onboard(db, config)
    with pytest.raises(AdminError, match=r"x\.csv, line 3: unknown organisation 'Nobody AG'"):
        await change(db, config, "import_vms", "x.csv",
                     "de-fr-srv-0001,Customer GmbH\nde-fr-srv-0002,Customer GmbH\nde-fr-srv-0003,Nobody AG\n")
    async with db.read() as store:
        assert await store.vms.list() == []
        assert [entry.action for entry in await store.audit.list()] == ["user.add", "user.add", "org.create"]


async def test_addresses_are_unique_across_organisations_whatever_their_case(db: Database, config: Config) -> None:
    """One address, one organisation: the same address in another case is refused for a second one."""
    await onboard(db, config)
    with pytest.raises(AdminError, match="needs a second address"):
        await change(db, config, "create_organisation", "Second AG", commercial="CHEF@Customer.Example",
                     technical="t@second.example")
    async with db.read() as store:
        assert await store.organisations.by_name("Second AG") is None
