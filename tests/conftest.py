"""Fixtures: a real daemon on loopback with a real SQLite file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.config import Config
from tests.helpers import make_config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def daemon(config: Config) -> AsyncIterator[Daemon]:
    async with Daemon(config) as running:
        yield running
