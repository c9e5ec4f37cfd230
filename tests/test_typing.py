"""The package type-checks under ``mypy --strict`` (STYLE: type hints on every public function)."""

from __future__ import annotations

import subprocess
import sys

from tests.process import ROOT


def test_mypy_strict_finds_nothing() -> None:
    """mypy, with the settings in pyproject.toml, reports no error in mailticketd/."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
