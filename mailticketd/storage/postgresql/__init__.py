"""The PostgreSQL backend: several daemons on one database."""

from mailticketd.storage.postgresql.db import PostgresDatabase

__all__ = ["PostgresDatabase"]
