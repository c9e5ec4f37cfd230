"""The helpdesk's doors: log-in answers, throttling, sessions (cookie, expiry, ending), CSRF, headers and escaping."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import statistics
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from mailticketd.app import Daemon
from mailticketd.clock import iso, utc_now
from mailticketd.directory.admin import DirectoryAdmin
from mailticketd.config import Config
from tests.helpdesk import COLLEAGUE, MANAGER, PASSWORD, add_person, browserless, csrf_in, people
from tests.helpers import make_config, make_mail, send, settle
from tests.test_web import link_in, path_of

async def delivered(maildir: Path, subject: str, timeout: float = 20.0) -> bytes:
    """The raw mail with ``subject`` that the delivery worker wrote to the maildir (the outbox keeps no link once
    sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []:
            raw = path.read_bytes()
            if subject in str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"]):
                return raw
        await asyncio.sleep(0.05)
    raise AssertionError(f"no mail '{subject}' in {maildir}")


_PROBLEM = re.compile(r'<p class="problem"[^>]*>(.*?)</p>', re.S)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


async def session_rows(daemon: Daemon) -> int:
    async with daemon.db.read() as store:
        async with store.conn.execute("SELECT count(*) FROM web_sessions") as cursor:
            row = await cursor.fetchone()
    return int(row[0]) if row else 0


# -- log-in ---------------------------------------------------------------------------------------------------------


async def test_every_failed_log_in_gets_the_same_answer(daemon: Daemon) -> None:
    """Wrong password, unknown address, a person who left, one never verified and one without a password: one
    answer."""
    found = await people(daemon)
    await add_person(daemon, "weg@kunde.example", organisation_id=found.organisation_id, status="inactive")
    await add_person(daemon, "neu@kunde.example", organisation_id=found.organisation_id, status="unverified")
    await add_person(daemon, "ohne@kunde.example", organisation_id=found.organisation_id, password=False)
    answers = set()
    for address, password in ((MANAGER, "falsch falsch falsch"), ("niemand@kunde.example", PASSWORD),
                              ("weg@kunde.example", PASSWORD), ("ohne@kunde.example", PASSWORD)):
        async with browserless(daemon) as client:
            status, page = await client.log_in(address, password)
            assert status == 401
            answers.add(_PROBLEM.search(page).group(1).strip())  # type: ignore[union-attr]
    async with daemon.db.transaction() as store:  # an address met in mail that set no password through a link
        await store.conn.execute("UPDATE users SET verified_at = NULL WHERE address = ?", (COLLEAGUE,))
    async with browserless(daemon) as client:
        status, page = await client.log_in(COLLEAGUE)
        answers.add(_PROBLEM.search(page).group(1).strip())  # type: ignore[union-attr]
    assert answers == {"E-Mail-Adresse oder Passwort ist falsch."}
    assert await session_rows(daemon) == 0


async def test_unknown_address_takes_about_as_long_as_a_wrong_password(daemon: Daemon) -> None:
    """An unknown address and a person who left cost a password check too, so timing tells nothing."""
    found = await people(daemon)
    await add_person(daemon, "weg@kunde.example", organisation_id=found.organisation_id, status="inactive")

    async def timed(address: str) -> float:
        async with browserless(daemon) as client:
            token = await client.token()
            started = time.perf_counter()
            async with client.session.post("/login", data={"address": address, "password": "nicht das Passwort",
                                                           "csrf": token}) as response:
                await response.read()
            return time.perf_counter() - started

    wrong = statistics.median([await timed(MANAGER) for _ in range(3)])
    for address in ("niemand@kunde.example", "weg@kunde.example"):
        other = statistics.median([await timed(address) for _ in range(3)])
        assert other > wrong / 3, (address, other, wrong)


async def test_five_failures_lock_the_address_whatever_the_password(daemon: Daemon) -> None:
    """After five wrong passwords the right one is refused too, with a clear 'wait' answer; others still log in."""
    await people(daemon)
    async with browserless(daemon) as client:
        for _ in range(5):
            assert (await client.log_in(MANAGER, "falsch falsch falsch"))[0] == 401
        status, page = await client.log_in(MANAGER)
        assert status == 429 and "Zu viele fehlgeschlagene Anmeldungen" in page and "15 Minuten" in page
        assert (await client.log_in(COLLEAGUE))[0] == 200
    async with daemon.db.transaction() as store:  # the window has passed
        await store.conn.execute("UPDATE login_failures SET at = ?", (iso(utc_now() - timedelta(minutes=16)),))
    async with browserless(daemon) as client:
        assert (await client.log_in(MANAGER))[0] == 200


async def test_forgotten_password_answers_alike_and_mails_only_real_people(daemon: Daemon) -> None:
    """The same page for a known and an unknown address; the known one gets a single-use link that sets a new
    password and ends the sessions the old one opened."""
    await people(daemon)
    async with browserless(daemon, address=MANAGER) as old_session:
        pages = []
        async with browserless(daemon) as client:
            for address in (MANAGER, "niemand@kunde.example"):
                status, page, _ = await client.post("/password", {"address": address}, form_page="/password")
                assert status == 200
                pages.append(page)
        assert pages[0] == pages[1] and "Wenn die Adresse bei uns eingetragen ist" in pages[0]
        await settle(daemon)
        for _ in range(100):  # the link is queued after the answer, in the background
            async with daemon.db.read() as store:
                mails = [row for row in await store.outbox.list(("queued", "sent")) if row.kind == "password"]
            if mails:
                break
            await asyncio.sleep(0.05)
        assert [row.rcpt_to for row in mails] == [MANAGER]
        raw = await delivered(daemon.config.outbound.maildir, "Neues Passwort für den Helpdesk")
        assert "/login" in raw.decode()
        link = path_of(link_in(raw))
        async with browserless(daemon) as client:
            token = csrf_in((await client.get(link))[1])
            new = "Ein ganz anderes Passwort 2026"
            status, page, _ = await client.post(link, {"password": new, "password_repeat": new, "csrf": token})
            assert status == 200 and "Jetzt im Helpdesk anmelden" in page
            assert (await client.get(link))[0] == 410  # single use
            assert (await client.log_in(MANAGER, new))[0] == 200
        status, page = await old_session.get("/tickets")
        assert "Im Helpdesk anmelden" in page  # the old password's session is gone


# -- sessions -------------------------------------------------------------------------------------------------------


async def test_session_cookie_is_http_only_and_lax_and_changes_at_log_in(daemon: Daemon) -> None:
    """The cookie is HttpOnly and SameSite=Lax (not Secure on plain http); a planted session id is replaced."""
    await people(daemon)
    async with browserless(daemon) as client:
        client.session.cookie_jar.update_cookies({"mailticketd_session": "planted-by-an-attacker-0123456789"},
                                                 client.session._base_url)  # type: ignore[attr-defined]
        token = await client.token()
        async with client.session.post("/login", data={"address": MANAGER, "password": PASSWORD, "csrf": token},
                                       allow_redirects=False) as response:
            assert response.status == 303
            header = next(value for value in response.headers.getall("Set-Cookie")
                          if value.startswith("mailticketd_session="))
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
        assert client.cookie("mailticketd_session") not in (None, "planted-by-an-attacker-0123456789")


async def test_secure_cookie_behind_https(tmp_path: Path) -> None:
    """With an https base URL the session cookie carries Secure."""
    config = make_config(tmp_path, http={"base_url": "https://support.example.net"})
    async with Daemon(config) as daemon:
        await people(daemon)
        # The browser speaks https to the proxy; here the test carries the Secure cookie itself.
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.http_port}",
                                         cookie_jar=aiohttp.DummyCookieJar()) as raw:
            async with raw.get("/login") as response:
                token = csrf_in(await response.text())
                assert "Secure" in response.headers["Set-Cookie"]
            async with raw.post("/login", data={"address": MANAGER, "password": PASSWORD, "csrf": token},
                                headers={"Cookie": f"mailticketd_csrf={token}"}, allow_redirects=False) as response:
                assert response.status == 303
                header = next(value for value in response.headers.getall("Set-Cookie")
                              if value.startswith("mailticketd_session="))
        assert "Secure" in header and "HttpOnly" in header


async def test_session_survives_a_restart_and_ends_at_log_out(config: Config) -> None:
    """A session is stored server-side: it works after a restart; logging out ends it for good."""
    async with Daemon(config) as daemon:
        await people(daemon)
        async with browserless(daemon, address=MANAGER) as client:
            cookie = client.cookie("mailticketd_session")
    async with Daemon(config) as daemon:
        headers = {"Cookie": f"mailticketd_session={cookie}"}
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.http_port}") as raw:
            async with raw.get("/tickets", headers=headers) as response:
                page = await response.text()
                assert response.status == 200 and "Abmelden" in page
            async with raw.post("/logout", headers=headers, data={"csrf": csrf_in(page)},
                                allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/login?bye=1"
            async with raw.get("/tickets", headers=headers, allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"].startswith("/login")
        assert await session_rows(daemon) == 0


async def test_deactivation_ends_the_persons_sessions_at_once(daemon: Daemon) -> None:
    """Staff deactivating someone (the CLI's operation) logs them out everywhere."""
    await people(daemon)
    async with browserless(daemon, address=COLLEAGUE) as first, browserless(daemon, address=COLLEAGUE) as second:
        async with daemon.db.transaction() as store:
            admin = DirectoryAdmin(store, daemon.config, daemon.services.mailer, actor="staff", now=utc_now())
            await admin.deactivate(COLLEAGUE)
        for client in (first, second):
            status, page = await client.get("/tickets")
            assert "Im Helpdesk anmelden" in page
        assert (await first.log_in(COLLEAGUE))[0] == 401


async def test_idle_and_old_sessions_end(daemon: Daemon) -> None:
    """Nine idle hours (idle limit 8) or 25 hours in all (limit 24) end a session."""
    await people(daemon)
    for column, hours in (("seen_at", 9), ("created_at", 25)):
        async with browserless(daemon, address=MANAGER) as client:
            async with daemon.db.transaction() as store:
                await store.conn.execute(f"UPDATE web_sessions SET {column} = ?",
                                         (iso(utc_now() - timedelta(hours=hours)),))
            status, page = await client.get("/tickets")
            assert "Im Helpdesk anmelden" in page, column
    assert await session_rows(daemon) == 0


# -- forms and pages ------------------------------------------------------------------------------------------------


async def test_a_post_without_the_right_csrf_token_changes_nothing(daemon: Daemon) -> None:
    """A new ticket, an answer or a log-in posted without (or with another) form token is refused with 403."""
    await people(daemon)
    await send(daemon.smtp_port, make_mail(MANAGER, subject="Alt"))
    await settle(daemon)
    async with browserless(daemon, address=MANAGER) as client:
        for token in (None, "x" * 43):
            data = {"subject": "Neu", "text": "Text"} | ({"csrf": token} if token else {})
            async with client.session.post("/tickets/new", data=data) as response:
                assert response.status == 403
            async with client.session.post("/tickets/10000/answer", data={"text": "x"} | data) as response:
                assert response.status == 403
    async with browserless(daemon) as client:
        async with client.session.post("/login", data={"address": MANAGER, "password": PASSWORD}) as response:
            assert response.status == 403
    async with daemon.db.read() as store:
        assert [t.number for t in await store.tickets.list()] == [10000]
        assert len(await store.articles.for_ticket(1)) == 1


async def test_security_headers_on_every_page(daemon: Daemon) -> None:
    """Log-in, list, ticket and 404 pages forbid scripts, framing, sniffing and referrers."""
    await people(daemon)
    await send(daemon.smtp_port, make_mail(MANAGER, subject="Alt"))
    await settle(daemon)
    async with browserless(daemon) as anonymous:
        async with anonymous.session.get("/login") as response:
            responses = [dict(response.headers)]
    async with browserless(daemon, address=MANAGER) as client:
        for path in ("/tickets", "/tickets/10000", "/tickets/new", "/organisation", "/tickets/4711", "/nowhere"):
            async with client.session.get(path) as response:
                responses.append(dict(response.headers))
    for headers in responses:
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'none'" in policy
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"


async def test_whatever_customers_wrote_is_shown_as_text(daemon: Daemon) -> None:
    """A subject, a name, a text and a file name with HTML in them appear escaped, never as markup."""
    await people(daemon)
    evil = "<script>alert(1)</script>"
    await send(daemon.smtp_port, make_mail(f'"{evil}" <{MANAGER}>', subject=evil, body=f"Text {evil}",
                                           attachments=[(f"{evil}.txt", "text/plain", b"x")]))
    await settle(daemon)
    async with browserless(daemon, address=MANAGER) as client:
        for path in ("/tickets", "/tickets/10000"):
            page = (await client.get(path))[1]
            assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_a_burst_of_guesses_at_once_is_throttled_like_one_after_another(daemon: Daemon) -> None:
    """Thirty wrong passwords sent at the same moment: at most five are checked, the rest are locked out, and the
    right password right after them is refused too."""
    await people(daemon)
    async with browserless(daemon) as client:
        token = await client.token()

        async def attempt(password: str) -> int:
            async with client.session.post("/login", data={"address": MANAGER, "password": password, "csrf": token},
                                           allow_redirects=False) as response:
                return response.status

        statuses = await asyncio.gather(*(attempt(f"falsch {index} falsch") for index in range(30)))
        assert statuses.count(401) <= 5 and statuses.count(429) >= 25
        assert await attempt(PASSWORD) == 429


async def test_log_in_goes_on_only_to_pages_of_our_own(daemon: Daemon) -> None:
    """A 'next' that a browser would read as another host (tab, backslash, double slash) ends at the ticket list."""
    await people(daemon)
    async with browserless(daemon, address=MANAGER) as client:
        for evil in ("/%09/evil.example/x", "//evil.example", "/\\evil.example", "/%0a/evil.example",
                     "https://evil.example", "/%2f%2fevil.example"):
            async with client.session.get(f"/login?next={evil}", allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/tickets", evil
        async with client.session.get("/login?next=/tickets/10000%3Fsent%3D1", allow_redirects=False) as response:
            assert response.headers["Location"].startswith("/tickets/10000")


async def test_logging_in_again_ends_the_earlier_session(daemon: Daemon) -> None:
    """A second log-in from the same browser replaces its session: the older cookie opens nothing."""
    await people(daemon)
    async with browserless(daemon, address=MANAGER) as client:
        first = client.cookie("mailticketd_session")
        status, page = await client.log_in(MANAGER)
        assert status == 200 and client.cookie("mailticketd_session") != first
    assert await session_rows(daemon) == 1


async def test_odd_page_numbers_are_the_first_page(daemon: Daemon) -> None:
    """'?page=²' or a number with thousands of digits shows the first page, not an error."""
    await people(daemon)
    async with browserless(daemon, address=MANAGER) as client:
        for page in ("%C2%B2", "9" * 5000, "-1", "abc"):
            status, text = await client.get(f"/tickets?page={page}")
            assert status == 200 and "Tickets von Kunde GmbH" in text
