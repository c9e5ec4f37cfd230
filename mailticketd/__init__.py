"""mailticketd: a mail-driven ticketing daemon for a managed-hosting support desk."""

__version__ = "0.1.0"
