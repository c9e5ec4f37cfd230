"""Verification links over HTTP: the pages, what a POST changes, expiry, single use, renewal, and a real browser."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import structlog
from argon2 import PasswordHasher
from selenium.webdriver.common.by import By
from yarl import URL

from mailticketd.app import Daemon
from mailticketd.clock import iso, utc_now
from mailticketd.config import DEFAULT_TEMPLATES, Config
from mailticketd.directory.models import User
from mailticketd.directory.verification import issue_verification, token_hash
from mailticketd.web import PageError
from tests import browser
from tests.helpers import make_config, make_mail, send, settle

PASSWORD = "Korrekt Pferd Batterie"
_LINK = re.compile(r"https?://\S+/verify/[A-Za-z0-9_-]+")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, http={"listen": "127.0.0.1:0"})


# The anonymous form token a browser got from an earlier page (double-submit cookie).
CSRF = "c" * 43


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[aiohttp.ClientSession]:
    base = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        session.cookie_jar.update_cookies({"mailticketd_csrf": CSRF}, URL(base))
        yield session


async def add_user(daemon: Daemon, address: str = "anna@customer.example", **fields: Any) -> User:
    async with daemon.db.transaction() as store:
        return await store.users.create(address, **fields)


async def issue(daemon: Daemon, user: User, *, hours: int = 72) -> str:
    """A fresh verification token for ``user``, as the daemon puts into a mail."""
    async with daemon.db.transaction() as store:
        return await issue_verification(store, user.id, hours=hours, now=utc_now())


async def expired_token(daemon: Daemon, user: User) -> str:
    """A token whose expiry lies an hour in the past, stored through the repository."""
    token = secrets.token_urlsafe(32)
    async with daemon.db.transaction() as store:
        await store.verifications.add(user.id, token_hash(token), iso(utc_now() - timedelta(hours=1)))
    return token


async def reload(daemon: Daemon, user: User) -> User:
    async with daemon.db.read() as store:
        found = await store.users.by_address(user.address)
    assert found is not None
    return found


async def user_row(daemon: Daemon, user: User) -> dict[str, Any]:
    async with daemon.db.read() as store:
        async with store.conn.execute(
            "SELECT password_hash, verified_at, status FROM users WHERE id = ?", (user.id,)
        ) as cursor:
            values = await cursor.fetchone()
    assert values is not None
    return {"password_hash": values[0], "verified_at": values[1], "status": values[2]}


async def token_used(daemon: Daemon, token: str) -> bool:
    async with daemon.db.read() as store:
        link = await store.verifications.by_sha256(token_hash(token))
    assert link is not None
    return link.used_at is not None


async def verify_mails(daemon: Daemon, address: str) -> list[bytes]:
    """The raw ``verify`` mails queued or sent to ``address``, oldest first."""
    async with daemon.db.read() as store:
        rows = [row for row in await store.outbox.list(("queued", "sent", "failed"))
                if row.kind == "verify" and row.rcpt_to == address]
        return [raw for row in rows if (raw := await store.outbox.raw(row.id)) is not None]


def link_in(raw: bytes) -> str:
    """The verification link in a mail's text, decoded from quoted-printable or base64."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    found = _LINK.search(body.get_content())
    assert found, body.get_content()
    return found.group(0)


def path_of(link: str) -> str:
    """The link's path: the test daemon listens on another port than the configured base URL says."""
    return urlsplit(link).path


def form(password: str = PASSWORD, repeated: str | None = None) -> dict[str, str]:
    return {"password": password, "password_repeat": password if repeated is None else repeated, "csrf": CSRF}


# -- the form -----------------------------------------------------------------


async def test_form_is_german_for_a_german_user(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A German user's link opens a German page with a labelled form for the password, typed twice."""
    token = await issue(daemon, await add_user(daemon, language="de"))
    async with client.get(f"/verify/{token}") as response:
        page = await response.text()
        assert response.status == 200
        assert response.content_type == "text/html"
    assert '<html lang="de">' in page
    assert "Passwort festlegen" in page and "anna@customer.example" in page
    assert '<label for="password">' in page and '<label for="password_repeat">' in page
    assert 'method="post"' in page


async def test_form_is_english_for_an_english_user(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """An English user's link opens an English page."""
    token = await issue(daemon, await add_user(daemon, language="en"))
    async with client.get(f"/verify/{token}") as response:
        page = await response.text()
        assert response.status == 200
    assert '<html lang="en">' in page
    assert "Set your password" in page and "Passwort" not in page


async def test_user_without_language_gets_the_default_language(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A user with no language of their own sees the configured default language (German)."""
    token = await issue(daemon, await add_user(daemon))
    async with client.get(f"/verify/{token}") as response:
        assert '<html lang="de">' in await response.text()


async def test_pages_load_nothing_from_elsewhere_and_are_not_cached(daemon: Daemon,
                                                                   client: aiohttp.ClientSession) -> None:
    """Pages reference no external resource, and forbid caching, framing, scripts and foreign referrers."""
    token = await issue(daemon, await add_user(daemon))
    async with client.get(f"/verify/{token}") as response:
        page = await response.text()
        headers = response.headers
    assert not re.search(r"(src|href)\s*=", page)
    assert "<script" not in page
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


async def test_get_does_not_use_the_link(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """Opening the link (as a link scanner does) changes nothing: the link still works afterwards."""
    user = await add_user(daemon)
    token = await issue(daemon, user)
    for _ in range(3):
        async with client.get(f"/verify/{token}") as response:
            assert response.status == 200
        async with client.head(f"/verify/{token}") as response:
            assert response.status == 200
    assert not await token_used(daemon, token)
    assert await user_row(daemon, user) == {"password_hash": None, "verified_at": None, "status": "unverified"}
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 200


# -- setting the password -------------------------------------------------------


async def test_post_sets_an_argon2_hash_and_verifies_the_address(daemon: Daemon,
                                                                client: aiohttp.ClientSession) -> None:
    """A matching password pair stores an Argon2id hash, sets verified_at, and makes the user active."""
    user = await add_user(daemon, language="en")
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form()) as response:
        page = await response.text()
        assert response.status == 200
    assert "E-mail address confirmed" in page
    row = await user_row(daemon, user)
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert PasswordHasher().verify(row["password_hash"], PASSWORD)
    assert row["verified_at"] is not None
    assert row["status"] == "active"
    assert await token_used(daemon, token)


async def test_verifying_gives_no_authority_and_no_organisation(daemon: Daemon,
                                                               client: aiohttp.ClientSession) -> None:
    """Role, authorisation and organisation stay exactly as staff left them, with or without an organisation."""
    async with daemon.db.transaction() as store:
        organisation = await store.organisations.create("Customer GmbH")
        member = await store.users.create("bob@customer.example", organisation_id=organisation.id)
    stranger = await add_user(daemon, "eve@elsewhere.example")
    for user in (member, stranger):
        async with client.post(f"/verify/{await issue(daemon, user)}", data=form()) as response:
            assert response.status == 200
        after = await reload(daemon, user)
        assert after.status == "active"
        assert (after.role, after.authorised, after.organisation_id) == ("user", False, user.organisation_id)


async def test_inactive_user_stays_inactive(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """An inactive user may prove the address and set a password, but stays inactive."""
    user = await add_user(daemon, status="inactive")
    async with client.post(f"/verify/{await issue(daemon, user)}", data=form()) as response:
        assert response.status == 200
    row = await user_row(daemon, user)
    assert row["status"] == "inactive"
    assert row["password_hash"].startswith("$argon2id$") and row["verified_at"] is not None


async def test_using_one_link_uses_up_the_users_other_links(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """After one link of a user sets the password, that user's older links say 'already used'."""
    user = await add_user(daemon, language="en")
    older, newer = await issue(daemon, user), await issue(daemon, user)
    other = await issue(daemon, await add_user(daemon, "bob@customer.example"))
    async with client.post(f"/verify/{newer}", data=form()) as response:
        assert response.status == 200
    async with client.get(f"/verify/{older}") as response:
        assert response.status == 410
        assert "already been used" in await response.text()
    assert not await token_used(daemon, other)


async def test_mismatched_passwords_are_refused_and_the_link_still_works(daemon: Daemon,
                                                                         client: aiohttp.ClientSession) -> None:
    """Two different passwords give 400 with the reason in the user's language; the link is not used up."""
    user = await add_user(daemon, language="de")
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form(PASSWORD, PASSWORD + "x")) as response:
        page = await response.text()
        assert response.status == 400
    assert "stimmen nicht überein" in page and 'role="alert"' in page
    assert not await token_used(daemon, token)
    assert (await user_row(daemon, user))["password_hash"] is None
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 200


async def test_short_password_is_refused_in_the_users_language(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A password under ten characters gives 400 saying the minimum, in English for an English user."""
    token = await issue(daemon, await add_user(daemon, language="en"))
    async with client.post(f"/verify/{token}", data=form("123456789")) as response:
        page = await response.text()
        assert response.status == 400
    assert "too short" in page and "at least 10 characters" in page
    assert not await token_used(daemon, token)


async def test_two_submissions_at_once_verify_only_once(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """Two simultaneous POSTs of one link: one sets the password, the other is told the link is used."""
    user = await add_user(daemon)
    token = await issue(daemon, user)

    async def submit(password: str) -> int:
        async with client.post(f"/verify/{token}", data=form(password)) as response:
            return response.status

    statuses = await asyncio.gather(submit("erstes Passwort"), submit("zweites Passwort"))
    assert sorted(statuses) == [200, 410]
    stored = (await user_row(daemon, user))["password_hash"]
    assert [_matches(stored, p) for p in ("erstes Passwort", "zweites Passwort")].count(True) == 1


def _matches(encoded: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(encoded, password)
    except Exception:
        return False


async def test_cross_site_post_is_refused(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A form posted from another site's page gets 403 and changes nothing."""
    user = await add_user(daemon)
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form(), headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
    async with client.post(f"/verify/{token}", data=form(), headers={"Sec-Fetch-Site": "cross-site"}) as response:
        assert response.status == 403
    assert not await token_used(daemon, token)
    assert (await user_row(daemon, user))["status"] == "unverified"


# -- used, expired and unknown links --------------------------------------------------


async def test_same_link_again_says_already_used(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """After use, the link answers 410 'already used' in the user's language, to GET and POST alike."""
    user = await add_user(daemon, language="de")
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 200
    first_hash = (await user_row(daemon, user))["password_hash"]
    for method in ("GET", "POST"):
        async with client.request(method, f"/verify/{token}", data=form("ein anderes Passwort")) as response:
            page = await response.text()
            assert response.status == 410
        assert "bereits verwendet" in page and f'action="/verify/{token}/renew"' in page
    assert (await user_row(daemon, user))["password_hash"] == first_hash


async def test_expired_link_says_expired(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A link past its expiry answers 410 'expired' in the user's language and offers a new one; POST changes nothing."""
    english = await add_user(daemon, language="en")
    german = await add_user(daemon, "bob@customer.example", language="de")
    token = await expired_token(daemon, english)
    async with client.get(f"/verify/{token}") as response:
        page = await response.text()
        assert response.status == 410
    assert "This link has expired" in page and "Send a new link" in page
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 410
    assert (await user_row(daemon, english))["status"] == "unverified"
    async with client.get(f"/verify/{await expired_token(daemon, german)}") as response:
        assert response.status == 410
        assert "abgelaufen" in await response.text()


async def test_expiry_follows_the_configured_hours(tmp_path: Path) -> None:
    """A link issued with the configured validity works within it and is expired after it (a clock passed in)."""
    config = make_config(tmp_path, http={"listen": "127.0.0.1:0", "verification_hours": 2})
    async with Daemon(config) as daemon:
        user = await add_user(daemon)
        token = await issue(daemon, user, hours=config.http.verification_hours)
        desk = daemon.web.desk
        assert (await desk.look_up(token)).state == "valid"
        desk.clock = lambda: utc_now() + timedelta(hours=2, seconds=1)
        assert (await desk.look_up(token)).state == "expired"


async def test_unknown_link_is_404_in_the_default_language(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A token nobody issued, or not shaped like one, gets a 404 page that reveals nothing."""
    for token in (secrets.token_urlsafe(32), "x", "ä" * 43):
        for method, path in (("GET", f"/verify/{token}"), ("POST", f"/verify/{token}"),
                             ("POST", f"/verify/{token}/renew")):
            async with client.request(method, path, data=form()) as response:
                page = await response.text()
                assert response.status == 404, (method, path)
            assert '<html lang="de">' in page and "nicht gültig" in page
    assert await verify_mails(daemon, "anna@customer.example") == []


# -- a new link by mail --------------------------------------------------------------


async def test_renew_queues_exactly_one_verify_mail_with_a_working_link(daemon: Daemon,
                                                                      client: aiohttp.ClientSession) -> None:
    """Asking for a new link on an expired one queues one 'verify' mail in the user's language, whose link works."""
    user = await add_user(daemon, language="en", name="Anna Example")
    token = await expired_token(daemon, user)
    async with client.post(f"/verify/{token}/renew", data={"csrf": CSRF}) as response:
        page = await response.text()
        assert response.status == 200
    assert "A new link has been sent" in page
    [raw] = await verify_mails(daemon, user.address)
    assert b"Please confirm your e-mail address" in raw
    link = link_in(raw)
    assert link.startswith(f"{daemon.config.http.base_url}/verify/")
    async with client.get(path_of(link)) as response:
        assert response.status == 200
    async with client.post(path_of(link), data=form()) as response:
        assert response.status == 200


async def test_renew_is_rate_limited(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """No more than three new links an hour: the fourth request gets 429 and queues nothing."""
    user = await add_user(daemon, language="de")
    token = await expired_token(daemon, user)
    for _ in range(3):
        async with client.post(f"/verify/{token}/renew", data={"csrf": CSRF}) as response:
            assert response.status == 200
    async with client.post(f"/verify/{token}/renew", data={"csrf": CSRF}) as response:
        page = await response.text()
        assert response.status == 429
    assert "später noch einmal" in page
    assert len(await verify_mails(daemon, user.address)) == 3


async def test_renew_of_a_working_link_sends_nothing(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """A link that still works is not renewed: the request is sent back to its form."""
    user = await add_user(daemon)
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}/renew", data={"csrf": CSRF}, allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"/verify/{token}"
    assert await verify_mails(daemon, user.address) == []


# -- secrets ----------------------------------------------------------------------------


@pytest.mark.sqlite_only  # reads the database files
async def test_token_is_stored_only_as_a_hash(daemon: Daemon, client: aiohttp.ClientSession, config: Config) -> None:
    """Neither an issued token nor a renewed one appears in the database files; their sha256 does."""
    user = await add_user(daemon)
    token = await issue(daemon, user)
    expired = await expired_token(daemon, user)
    async with client.post(f"/verify/{expired}/renew", data={"csrf": CSRF}) as response:
        assert response.status == 200
    renewed = path_of(link_in((await verify_mails(daemon, user.address))[0])).rsplit("/", 1)[1]
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 200
    database = config.storage.database
    stored = b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))
    assert token_hash(token).encode() in stored
    assert token.encode() not in stored and expired.encode() not in stored
    assert PASSWORD.encode() not in stored
    # The renewed link travels in the queued mail, as any link must; its table keeps only the hash.
    async with daemon.db.read() as store:
        async with store.conn.execute("SELECT sha256 FROM verification_tokens") as cursor:
            hashes = {values[0] for values in await cursor.fetchall()}
    assert token_hash(renewed) in hashes and renewed not in hashes


async def test_requests_are_logged_without_tokens(daemon: Daemon, client: aiohttp.ClientSession,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """No log line, from aiohttp or from us, contains the token of a link that was opened and used."""
    caplog.set_level("DEBUG")
    token = await issue(daemon, await add_user(daemon))
    with structlog.testing.capture_logs() as events:
        async with client.get(f"/verify/{token}") as response:
            assert response.status == 200
        async with client.post(f"/verify/{token}", data=form()) as response:
            assert response.status == 200
    assert any(event.get("route") == "/verify/{token}" for event in events)
    assert token not in repr(events)
    assert token not in caplog.text
    assert not [record for record in caplog.records if record.name == "aiohttp.access"]


# -- start-up -----------------------------------------------------------------------------


def test_broken_or_missing_page_template_stops_start_up(tmp_path: Path) -> None:
    """A page template that is missing, or does not compile, keeps the daemon from starting."""
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, folder)
    config = make_config(tmp_path, mail={"templates": str(folder)}, http={"listen": "127.0.0.1:0"})
    (folder / "en" / "pages" / "not_found.html").unlink()
    with pytest.raises(PageError, match="not_found.html"):
        Daemon(config)
    shutil.copy(DEFAULT_TEMPLATES / "en" / "pages" / "not_found.html", folder / "en" / "pages")
    (folder / "de" / "pages" / "link_sent.html").write_text("{% block content %}{{ hours ", encoding="utf-8")
    with pytest.raises(PageError, match="link_sent.html"):
        Daemon(config)


# -- a real browser ------------------------------------------------------------------------


def _open_and_set_password(driver: Any, url: str, password: str, screenshot: Path) -> str:
    driver.get(url)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "password_repeat").send_keys(password)
    browser.submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    heading = driver.find_element(By.TAG_NAME, "h1").text
    driver.save_screenshot(str(screenshot))
    return heading + "\n" + driver.find_element(By.TAG_NAME, "main").text


def _open(driver: Any, url: str) -> str:
    driver.get(url)
    return str(driver.find_element(By.TAG_NAME, "main").text)


async def _maildir_file(maildir: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
        if files:
            return files[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no mail in {maildir}/new after {timeout}s")


# ``make test`` installs the browser; under CI a missing one is a failure, not a skip.
@pytest.mark.skipif(not browser.available() and not os.environ.get("CI"),
                    reason="needs Debian's chromium and chromium-driver (make test installs them)")
async def test_verification_in_a_real_browser(tmp_path: Path) -> None:
    """In headless Chromium: the link from the acknowledgement in the maildir sets a password; again it is 'already used'; an expired one is 'expired'."""
    config = make_config(tmp_path, http={"listen": "127.0.0.1:0"}, operators={"addresses": []})
    async with Daemon(config) as daemon:
        await send(daemon.smtp_port, make_mail("neu@kunde.example", subject="Server antwortet nicht"),
                   mail_from="neu@kunde.example")
        await settle(daemon)
        mail = await _maildir_file(config.outbound.maildir)
        link = link_in(mail.read_bytes())
        assert link.startswith(f"{config.http.base_url}/verify/")
        url = f"http://127.0.0.1:{daemon.http_port}{path_of(link)}"
        async with daemon.db.read() as store:
            user = await store.users.by_address("neu@kunde.example")
        assert user is not None and user.status == "unverified"
        screenshot = tmp_path / "verified.png"

        with browser.chromium(tmp_path / "chromium-profile") as driver:
            success = await asyncio.to_thread(_open_and_set_password, driver, url, "ein sicheres Passwort", screenshot)
            again = await asyncio.to_thread(_open, driver, url)
            # Made after the password was set, which uses up every older link of the user.
            expired = f"http://127.0.0.1:{daemon.http_port}/verify/{await expired_token(daemon, user)}"
            old = await asyncio.to_thread(_open, driver, expired)

        assert "E-Mail-Adresse bestätigt" in success
        assert "bereits verwendet" in again and "Neuen Link senden" in again
        assert "abgelaufen" in old
        assert (await reload(daemon, user)).status == "active"
        assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and screenshot.stat().st_size > 1000
