"""Run the daemon as a real process, as an admin would, for crash and signal tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import SUPPORT, free_port

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, extra: str = "", *, http_port: int = 0,
                 addresses: tuple[str, ...] = (SUPPORT,)) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / "mailticketd.toml"
    path.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
        f'[mail]\naddresses = {json.dumps(list(addresses))}\n\n'
        f'[storage]\ndatabase = "{tmp_path / "db.sqlite3"}"\n\n'
        f'[outbound]\nmaildir = "{tmp_path / "maildir"}"\n\n'
        f'[inbox]\npoll_interval = 0.2\n{extra}',
        encoding="utf-8",
    )
    return path, port


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mailticketd ARGS`` (in this checkout's folder, unless ``cwd``) and capture its output."""
    return subprocess.run([sys.executable, "-m", "mailticketd", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)


def wait_for_banner(port: int, process: subprocess.Popen[bytes], log: Path | None = None,
                    timeout: float = 30) -> None:
    """Wait until a daemon started as ``process`` greets on ``port``; fail with its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text() if log else "the daemon exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.recv(100)
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the daemon did not start: {log.read_text() if log else ''}")


class DaemonProcess:
    """``mailticketd serve`` in a child process, its stderr (JSON logs) kept in a file."""

    def __init__(self, config: Path, port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.port, self.log, self.env = config, port, log, env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailticketd", "--config", str(self.config), "serve"],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **self.env},
            )
        wait_for_banner(self.port, self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_for_event(self, name: str, count: int = 1, timeout: float = 30) -> list[dict[str, object]]:
        """Wait until the log holds ``count`` events called ``name``; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [event for event in self.events() if event.get("event") == name]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {name} event in {self.log.read_text()}")

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def events(self) -> list[dict[str, object]]:
        import json
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found
