"""What every storage backend offers: transactions and reads yielding the same ``Store`` of repositories.

The backends (``storage.db`` for SQLite, ``storage.postgresql`` for PostgreSQL) differ in how they connect,
migrate and serialise writers; the repositories above them run the same SQL, asking the connection's
``dialect`` for the little that differs.
"""

from __future__ import annotations

import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from mailticketd.storage.audit import AuditRepository
from mailticketd.storage.connection import Connection
from mailticketd.storage.dialect import Dialect
from mailticketd.storage.directory import OrganisationRepository, UserRepository, VmRepository
from mailticketd.storage.helpdesk import HelpdeskRepository
from mailticketd.storage.inbox import InboxRepository
from mailticketd.storage.intake import Intake
from mailticketd.storage.outbox import OutboxRepository
from mailticketd.storage.tickets import ArticleRepository, TicketRepository
from mailticketd.storage.verification import VerificationRepository


class SchemaTooNew(Exception):
    """The database was written by a newer mailticketd than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"database schema version {found} is newer than this mailticketd knows ({known})")
        self.found = found
        self.known = known


class Store:
    """The repositories of one connection, used inside a transaction or a read."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.inbox = InboxRepository(conn)
        self.organisations = OrganisationRepository(conn)
        self.users = UserRepository(conn)
        self.vms = VmRepository(conn)
        self.verifications = VerificationRepository(conn)
        self.tickets = TicketRepository(conn)
        self.articles = ArticleRepository(conn)
        self.outbox = OutboxRepository(conn)
        self.audit = AuditRepository(conn)
        self.helpdesk = HelpdeskRepository(conn)

    @asynccontextmanager
    async def savepoint(self, name: str) -> AsyncIterator[None]:
        """A part of the transaction that is undone alone when its block raises."""
        await self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.conn.execute(f"ROLLBACK TO {name}")
            await self.conn.execute(f"RELEASE {name}")
            raise
        await self.conn.execute(f"RELEASE {name}")


def _owner() -> str:
    """This process among the daemons sharing a database: host, process id, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Database(ABC):
    """An open database: write transactions, consistent reads, and the SMTP side's ``intake``."""

    dialect: Dialect
    intake: Intake

    def __init__(self) -> None:
        # Who claims queue rows in this process (PostgreSQL: several daemons share the queues).
        self.owner = _owner()

    @property
    def shared(self) -> bool:
        """True when several daemons may work on this database at once."""
        return self.dialect.shared

    @property
    @abstractmethod
    def describe(self) -> str:
        """The database for people: a file name, or a URL without password."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The newest schema version this mailticketd knows."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connections; safe to call twice."""

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    def transaction(self, *, backlog: bool = False) -> AbstractAsyncContextManager[Store]:
        """A write transaction, one at a time across every daemon on the database: committed when the block ends,
        rolled back if it raises.  ``backlog``: more work waits behind this one (a storm), so the backend may
        favour throughput over the latency of others for its commit."""

    @abstractmethod
    def read(self) -> AbstractAsyncContextManager[Store]:
        """A consistent read of the current state."""

    @abstractmethod
    def claims(self) -> AbstractAsyncContextManager[Store]:
        """A short transaction that claims queue rows (``InboxRepository.claim_due_batch``): with several daemons a
        write that runs beside the others' transactions; with one (SQLite) a read, as nothing needs claiming."""

    @abstractmethod
    def raw_chunks(self, inbox_id: int) -> Iterator[bytes]:
        """A stored mail's bytes in pieces, for a mail the inbox's batch left without them (blocking: iterate it in
        a worker thread, never on the event loop)."""

    @abstractmethod
    async def backup(self, target: Path) -> None:
        """A consistent copy of the live database at ``target``."""
