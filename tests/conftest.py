"""Fixtures: a real daemon on loopback with a real database per test: an SQLite file, or (with
``MAILTICKETD_TEST_BACKEND=postgresql`` or ``--backend=postgresql``) a fresh database on a private PostgreSQL
cluster that the session starts.  Tests marked ``sqlite_only`` look into the SQLite file itself and are skipped
on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.config import Config
from tests import helpers
from tests.helpers import make_config

BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=BACKENDS, default=os.environ.get("MAILTICKETD_TEST_BACKEND") or "sqlite",
                     help="the database the tests run on (default: $MAILTICKETD_TEST_BACKEND, else sqlite)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test looks into the SQLite file; skipped on PostgreSQL")
    config.addinivalue_line("markers", "postgresql: the test needs a PostgreSQL cluster, whatever the backend")


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {config.getoption('--backend')}"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[object]:
    """A private PostgreSQL cluster for the whole session, stopped at its end."""
    from tests.postgres import Cluster, available

    if not available():
        pytest.skip("PostgreSQL is not installed (tests/setup-system.sh installs it)")
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: object) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped after it."""
    from tests.postgres import Cluster

    assert isinstance(postgres_cluster, Cluster)
    url = postgres_cluster.database()
    yield url
    postgres_cluster.drop(url)


@pytest.fixture(autouse=True)
def _backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL, ``make_config`` gives each test a fresh database; SQLite-only tests are skipped there."""
    if request.config.getoption("--backend") != "postgresql":
        yield
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("works on the SQLite file itself (directly, or through a process of its own)")
    helpers.DATABASE_URL = request.getfixturevalue("postgres_url")
    try:
        yield
    finally:
        helpers.DATABASE_URL = None


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def daemon(config: Config) -> AsyncIterator[Daemon]:
    async with Daemon(config) as running:
        yield running
