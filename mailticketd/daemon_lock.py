"""One daemon per SQLite database: an exclusive lock beside the database, held for the daemon's life.

Two daemons on one SQLite file would each process the same inbox rows and send
every answer twice.  The lock is ``flock`` on ``<database>.lock``: the kernel
releases it when the process ends, however it ends, so a crash never leaves a
stale lock behind.  The staff CLI does not take it and works beside a running
daemon.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AlreadyRunning(Exception):
    """Another daemon holds the database's lock."""

    def __init__(self, database: Path, lock: Path, holder: str) -> None:
        who = f"pid {holder}" if holder.isdigit() else "another process"
        super().__init__(f"another mailticketd ({who}) already serves the database {database} "
                         f"(lock {lock}); one daemon per SQLite database")
        self.database = database
        self.lock = lock


class DatabaseLock:
    """The exclusive lock of one database; ``acquire`` refuses at once when it is taken."""

    def __init__(self, database: Path) -> None:
        self.database = database.resolve()  # the same file however the config names it
        self.path = self.database.with_name(self.database.name + ".lock")
        self._descriptor: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
            os.close(descriptor)
            raise AlreadyRunning(self.database, self.path, holder) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        """Give the lock up; safe to call twice (the file stays, empty, for the next daemon)."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.ftruncate(descriptor, 0)
            os.close(descriptor)
