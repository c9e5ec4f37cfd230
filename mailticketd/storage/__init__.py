"""The one storage interface: a database handle whose transactions expose repositories by area."""

from mailticketd.storage.db import Database, SchemaTooNew, Store

__all__ = ["Database", "SchemaTooNew", "Store"]
