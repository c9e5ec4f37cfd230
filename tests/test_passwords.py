"""Weak passwords are refused with a reason a person understands, in German and English."""

from __future__ import annotations

import aiohttp
import pytest

from mailticketd.app import Daemon
from mailticketd.directory.passwords import (WEAK_COMMON, WEAK_DATE, WEAK_PATTERN, WEAK_PERSONAL, check_password,
                                             password_problem)
from tests.test_web import add_user, client, config, form, issue, token_used, user_row  # noqa: F401 (fixtures)

ANNA = ("anna.schmidt@customer.example", "Anna Schmidt")


@pytest.mark.parametrize(("password", "weakness"), [
    ("aaaaaaaaaa", WEAK_PATTERN),
    ("1234567890", WEAK_COMMON),
    ("password12", WEAK_COMMON),
    ("Passwort2024", WEAK_COMMON),
    ("qwertzuiop1", WEAK_COMMON),
    ("19.05.1985!", WEAK_DATE),
    ("anna.schmidt1", WEAK_PERSONAL),
    ("AnnaSchmidt2024", WEAK_PERSONAL),
])
def test_guessable_passwords_are_refused_with_what_gives_them_away(password: str, weakness: str) -> None:
    """Common passwords, repeats, keyboard rows, dates and the person's own name are refused, each named."""
    assert password_problem(password, password, ANNA) == weakness


@pytest.mark.parametrize("password", ["Korrekt Pferd Batterie", "Müller-Server-Raum-17", "Kaffee ohne Zucker bitte",
                                      "Mein Name ist anna.schmidt und ich mag Tee", "x" * 30 + "Tn7!qZ" + "a" * 60])
def test_hard_to_guess_passwords_are_taken(password: str) -> None:
    """Several unrelated words, a long sentence with the name in it, or a long password past zxcvbn's limit pass."""
    assert password_problem(password, password, ANNA) is None


async def test_check_password_gives_the_same_answer_off_the_event_loop() -> None:
    """The async check says what the plain one says."""
    assert await check_password("password12", "password12", ANNA) == WEAK_COMMON
    assert await check_password("Korrekt Pferd Batterie", "Korrekt Pferd Batterie", ANNA) is None


async def test_weak_password_is_refused_on_the_page_in_german(daemon: Daemon, client: aiohttp.ClientSession) -> None:
    """"password12" on the verification form gives 400 saying why, with advice; the link still works."""
    user = await add_user(daemon, language="de")
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form("password12")) as response:
        page = await response.text()
        assert response.status == 400
    assert "zu leicht zu erraten" in page and "häufig benutztes Passwort" in page and 'role="alert"' in page
    assert "Wörter, die nichts miteinander zu tun haben" in page
    assert not await token_used(daemon, token)
    assert (await user_row(daemon, user))["password_hash"] is None


async def test_own_address_as_password_is_refused_on_the_page_in_english(daemon: Daemon,
                                                                         client: aiohttp.ClientSession) -> None:
    """A password that is the user's own address plus a digit is refused in English, naming the reason."""
    user = await add_user(daemon, "anna.schmidt@customer.example", language="en")
    token = await issue(daemon, user)
    async with client.post(f"/verify/{token}", data=form("anna.schmidt@customer.example1")) as response:
        page = await response.text()
        assert response.status == 400
    assert "too easy to guess" in page and "your name or your e-mail address" in page
    async with client.post(f"/verify/{token}", data=form()) as response:
        assert response.status == 200
