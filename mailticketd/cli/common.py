"""What every command module shares: exit codes, errors, argument types, output."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from mailticketd.config import Config
from mailticketd.storage import Database

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2

Handler = Callable[[argparse.Namespace, Config, Database], Awaitable[None]]


# A person's standing (views.user_view "standing"), in the words operator notices use.
STANDINGS = {"authorised": "authorised contact", "user": "member, not authorised", "unverified": "unverified address",
             "confirmed": "address confirmed, no organisation", "inactive": "inactive (left)"}


class CommandError(Exception):
    """A staff command cannot do what was asked; the message says why."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def date_argument(text: str) -> date:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"bad date {text!r} — expected YYYY-MM-DD")


def emit(args: argparse.Namespace, data: Any, table: Callable[[], str]) -> None:
    """JSON for scripts with ``--json``, else the table for people."""
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else table())


def require_database(config: Config) -> None:
    """Refuse to work on a database that is not there: a wrong config or folder would make a new, empty one."""
    if not config.storage.shared and not config.storage.database.exists():
        raise CommandError(f"no database at {config.storage.database} (config: {config.source}); "
                           "`mailticketd migrate` creates a new one, and so does `mailticketd serve`")
