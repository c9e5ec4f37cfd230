"""The one storage interface: a database handle whose transactions expose repositories by area.

``database_for`` picks the backend from the configuration: SQLite for a file, PostgreSQL for a URL.
"""

from __future__ import annotations

from mailticketd.config import StorageConfig
from mailticketd.storage.base import Database, SchemaTooNew, Store
from mailticketd.storage.db import SqliteDatabase

__all__ = ["Database", "SchemaTooNew", "SqliteDatabase", "Store", "database_for"]


def database_for(storage: StorageConfig) -> Database:
    """The configured database (not opened yet)."""
    if storage.shared:
        from mailticketd.storage.postgresql import PostgresDatabase  # asyncpg only where PostgreSQL is used

        return PostgresDatabase(storage.url, password=storage.password(), connect_timeout=storage.busy_timeout * 2)
    return SqliteDatabase(storage.database, busy_timeout=storage.busy_timeout)
