"""A private PostgreSQL cluster for the tests: ``initdb`` in a temporary folder, a free port, trust for the test user.

The session starts it when the first test needs it and stops it at the end (also after failures, and at exit
should the session be interrupted); each test gets a database of its own, copied from a migrated template.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mailticketd.storage.postgresql import PostgresDatabase
from tests.helpers import free_port

BIN = Path(os.environ.get("MAILTICKETD_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "mailticketd"
TEMPLATE = "mailticketd_template"


def available() -> bool:
    """True when the PostgreSQL server programs are installed (Debian's ``postgresql`` package)."""
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


class Cluster:
    """A running private cluster; ``database()`` makes a fresh migrated database and returns its URL."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mailticketd-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._as: list[str] = []
        self._names = itertools.count(1)
        self._running = False
        if os.geteuid() == 0:  # the server refuses to run as root: it runs as the postgres (or nobody) user
            account = "postgres" if _exists("postgres") else "nobody"
            entry = pwd.getpwnam(account)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            self._as = ["runuser", "-u", account, "--"]

    def url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self._run(BIN / "initdb", "-D", self.data, "-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
                   " -c fsync=off -c full_page_writes=off -c shared_buffers=32MB")
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "server.log", "-w", "-t", "60",
                  "-o", options, "start")
        self._running = True
        atexit.register(self.stop)
        self.psql(f"CREATE DATABASE {TEMPLATE}")
        asyncio.run(_migrate(self.url(TEMPLATE)))

    def database(self) -> str:
        """A new database with the current schema (a copy of the template: fast)."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def empty_database(self) -> str:
        """A new database without any schema."""
        name = f"empty_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def password_database(self, password: str) -> str:
        """A new empty database owned by a new role that must log in with ``password`` (no superuser, no trust);
        returns its URL (without the password)."""
        number = next(self._names)
        role, name = f"desk_{os.getpid()}_{number}", f"owned_{os.getpid()}_{number}"
        self.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {role}")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.psql("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the server reads pg_hba.conf again on its own time
        return f"postgresql://{role}@127.0.0.1:{self.port}/{name}"

    def drop(self, url: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def psql(self, command: str) -> str:
        result = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder), "-p",
                                 str(self.port), "-U", USER, "-d", "postgres", "-At", "-c", command],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql {command!r}: {result.stderr}")
        return result.stdout

    def stop(self) -> None:
        if self._running:
            self._running = False
            subprocess.run([*self._as, str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *command: object) -> None:
        result = subprocess.run([*self._as, *map(str, command)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(f"{command[0]} failed: {result.stderr}{log.read_text() if log.exists() else ''}")


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True


async def _migrate(url: str) -> None:
    async with PostgresDatabase(url):
        pass
