"""A private Postfix instance for end-to-end tests, and an SMTP sink that runs beside it in a thread.

Each ``Postfix`` lives in its own directory (configuration, queue, data, log),
listens with smtpd on a free loopback port and sends mail on by a transport
map: the support domain to the daemon, the customers' and operators' domains
to the test sink.  It never uses DNS, the system's Postfix or port 25.

Why the instance directory is not pytest's ``tmp_path``: Postfix's daemons
drop to the ``postfix`` user and must reach the queue through every parent
directory (``/tmp/pytest-of-root`` is 0700), and the log socket's absolute
path must fit in a Unix socket name (108 bytes).  So the instance lives in a
short world-traversable directory under ``/tmp``, and ``stop()`` copies the
mail log next to the test's files before removing it.

Postfix's master needs root; the packages come from ``tests/setup-system.sh``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.helpers import free_port
from tests.sink import Sink

SETUP_HINT = "run `bash tests/setup-system.sh` (installs the Debian programs the tests drive)"
HOSTNAME = "mta.example.test"

# Only the services a relay-only Postfix uses, none chrooted (a private queue has no chroot jail).
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

T = TypeVar("T")


def command(name: str) -> str:
    """The path of a Postfix or swaks command, or fail the test with the set-up hint."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} is not installed: {SETUP_HINT}", pytrace=False)
    return found


def require_root() -> None:
    """Postfix's master daemon refuses to run as anyone but root."""
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root (its master daemon runs only as root)")


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str,
             details: Callable[[], str] = lambda: "") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds with ``details()``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing after {timeout:.0f}s\n{details()}")
        time.sleep(0.1)


class Postfix:
    """One private Postfix: ``start()``, mail to ``127.0.0.1:port``, ``stop()`` (or use it as a context manager).

    ``routes`` maps a domain to the loopback port that takes its mail
    (``transport_maps``); ``relay_domains`` are the domains Postfix accepts
    from anyone; ``settings`` are further ``main.cf`` lines, e.g. a
    ``relay_recipient_maps``.  ``self_signed_tls`` makes smtpd offer
    STARTTLS with a self-signed certificate, as Debian's default snakeoil
    set-up does.
    """

    def __init__(self, routes: Mapping[str, int], *, relay_domains: tuple[str, ...] = ("example.net",),
                 settings: Mapping[str, str] | None = None, self_signed_tls: bool = False,
                 keep_log: Path | None = None) -> None:
        self.routes = dict(routes)
        self.relay_domains = relay_domains
        self.settings = dict(settings or {})
        self.self_signed_tls = self_signed_tls
        self.keep_log = keep_log
        self.port = 0
        self.root: Path | None = None

    # -- the instance's files

    @property
    def config_directory(self) -> Path:
        assert self.root is not None, "Postfix is not started"
        return self.root / "conf"

    @property
    def maillog(self) -> Path:
        assert self.root is not None, "Postfix is not started"
        return self.root / "maillog"

    def main_cf(self) -> str:
        assert self.root is not None
        transports = ", ".join(f"{domain}=smtp:[127.0.0.1]:{port}" for domain, port in self.routes.items())
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "queue"),
            "data_directory": str(self.root / "data"),  # Postfix creates it, owned by the postfix user
            "myhostname": HOSTNAME,
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": ", ".join(self.relay_domains),
            "mynetworks": "127.0.0.0/8",
            "transport_maps": f"inline:{{ {transports} }}",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "biff": "no",
            # Deferred mail comes back within seconds, not the default 5 minutes.
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
        }
        if self.self_signed_tls:
            settings |= {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(self.root / "cert.pem"),
                         "smtpd_tls_key_file": str(self.root / "key.pem")}
        settings.update(self.settings)
        return "".join(f"{name} = {value}\n" for name, value in settings.items())

    # -- life cycle

    def start(self) -> Postfix:
        require_root()
        postfix = command("postfix")
        self.root = Path(tempfile.mkdtemp(prefix="mtd-postfix-", dir="/tmp"))
        self.root.chmod(0o755)
        (self.root / "queue").mkdir()
        self.config_directory.mkdir()
        self.port = free_port()
        if self.self_signed_tls:
            self._make_certificate()
        (self.config_directory / "main.cf").write_text(self.main_cf(), encoding="utf-8")
        (self.config_directory / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"),
                                                         encoding="utf-8")
        for name in ("main.cf", "master.cf"):
            # Postfix waits (in 0.3 s steps) until main.cf is over a second old; these files are final.
            past = time.time() - 10
            os.utime(self.config_directory / name, (past, past))
        started = subprocess.run([postfix, "-c", str(self.config_directory), "start"],
                                 capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            output = f"{started.stdout}{started.stderr}\n{self.log()}"
            self.stop()
            raise AssertionError(f"postfix start failed ({started.returncode}):\n{output}")
        wait_for(self._listening, timeout=30, what=f"Postfix's smtpd on port {self.port}", details=self.log)
        return self

    def stop(self) -> None:
        """Stop the instance, make sure none of its processes is left, keep its log, remove its files."""
        if self.root is None:
            return
        try:
            if (self.root / "queue" / "pid" / "master.pid").exists():
                subprocess.run([command("postfix"), "-c", str(self.config_directory), "stop"],
                               capture_output=True, text=True, timeout=60)
            left = self._wait_gone(timeout=15)
            for pid in left:
                _kill(pid)
            assert not left, f"Postfix processes still running after 'postfix stop': {left}"
        finally:
            if self.keep_log is not None and self.maillog.exists():
                shutil.copyfile(self.maillog, self.keep_log)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests look at

    def log(self) -> str:
        """The instance's mail log (for assertion messages)."""
        try:
            return "--- Postfix log ---\n" + self.maillog.read_text(encoding="utf-8", errors="replace")
        except (OSError, AssertionError):
            return "--- no Postfix log ---"

    def queue(self) -> list[dict[str, object]]:
        """The queued messages as ``postqueue -j`` describes them (queue_name, queue_id, recipients…)."""
        listing = self._postqueue("-j")
        return [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """``postqueue -f``: try every queued message now."""
        self._postqueue("-f")

    def wait_for_log(self, pattern: str, *, timeout: float = 60) -> re.Match[str]:
        """Wait until a line of the mail log matches ``pattern``; return the match."""
        compiled = re.compile(pattern)

        def probe() -> re.Match[str] | None:
            text = self.maillog.read_text(encoding="utf-8", errors="replace") if self.maillog.exists() else ""
            return compiled.search(text)

        return wait_for(probe, timeout=timeout, what=f"Postfix log line /{pattern}/", details=self.log)

    def processes(self) -> list[int]:
        """Live processes of this instance: Postfix passes ``MAIL_CONFIG`` to every daemon it starts."""
        marker = f"MAIL_CONFIG={self.config_directory}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                    continue  # already dead, only waiting for its parent to reap it
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
        return found

    def _make_certificate(self) -> None:
        assert self.root is not None
        made = subprocess.run(
            [command("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={HOSTNAME}", "-keyout", str(self.root / "key.pem"), "-out", str(self.root / "cert.pem")],
            capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr

    def _postqueue(self, flag: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([command("postqueue"), "-c", str(self.config_directory), flag],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"postqueue {flag} failed: {done.stderr}\n{self.log()}"
        return done

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                return conn.recv(100).startswith(b"220")
        except OSError:
            return False

    def _wait_gone(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def threaded_sink() -> Iterator[Sink]:
    """A ``tests.sink.Sink`` on its own event loop in a thread, so synchronous tests can drive processes."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="smtp-sink", daemon=True)
    thread.start()
    sink = Sink()
    try:
        asyncio.run_coroutine_threadsafe(sink.start(), loop).result(timeout=30)
        yield sink
    finally:
        asyncio.run_coroutine_threadsafe(sink.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
