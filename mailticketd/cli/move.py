"""``mailticketd migrate-database --to postgresql://…``: move the desk from its SQLite file into an empty PostgreSQL
database, verified by row counts and checksums per table (``--verify-only`` compares again without copying).

Exit codes: 0 copied (or compared) and every table matches; 1 refused or failed (a daemon serves the SQLite file,
the target is not empty or unreachable, the config names PostgreSQL already); 2 bad arguments; 3 the tables do not
match (counts or checksums differ, named).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlsplit

from mailticketd.cli.common import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, Handler
from mailticketd.config import PASSWORD_ENV, POSTGRESQL_SCHEMES, Config
from mailticketd.tickets.tokens import SECRET_FILE

EXIT_MISMATCH = 3


class _Refused(Exception):
    """migrate-database cannot go on; the message says why (exit 1)."""


def add_parsers(commands: Any, json_flag: argparse.ArgumentParser) -> dict[tuple[str, str | None], Handler]:
    move = commands.add_parser(
        "migrate-database", parents=[json_flag],
        help="copy the SQLite database into an empty PostgreSQL database, verified by row counts and checksums "
             "(stop the daemon first); exit 3 when a table does not match")
    move.add_argument("--to", required=True, metavar="URL",
                      help="postgresql://user@host:port/name; the password as for serve: [storage] password_file, "
                           f"else ${PASSWORD_ENV}, else $PGPASSWORD or ~/.pgpass")
    move.add_argument("--verify-only", action="store_true",
                      help="copy nothing: compare the row counts and checksums of a database copied before")
    return {}


def run_standalone(args: argparse.Namespace, config: Config) -> int | None:
    if args.command != "migrate-database":
        return None
    target = urlsplit(args.to)
    if target.scheme not in POSTGRESQL_SCHEMES or not target.path.strip("/"):
        print(f"mailticketd: migrate-database: --to must be postgresql://user@host:port/name, got {args.to!r}",
              file=sys.stderr)
        return EXIT_CONFIG
    if target.password is not None:
        print("mailticketd: migrate-database: --to must not contain a password: put it in [storage] password_file "
              f"or ${PASSWORD_ENV}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(_move(args, config))
    except _Refused as error:
        print(f"mailticketd: migrate-database: {error}", file=sys.stderr)
        return EXIT_ERROR


async def _move(args: argparse.Namespace, config: Config) -> int:
    import asyncpg

    from mailticketd.daemon_lock import AlreadyRunning, DatabaseLock
    from mailticketd.storage import SqliteDatabase
    from mailticketd.storage.move import NotEmpty, check_empty, copy, open_source, verify
    from mailticketd.storage.postgresql import PostgresDatabase
    from mailticketd.storage.postgresql.db import public_url

    if config.storage.shared:
        raise _Refused(f"the configured database is PostgreSQL already ({config.storage.url}); migrate-database "
                       "copies the configured SQLite file: run it with the config the desk had on SQLite")
    path = config.storage.database
    if not path.exists():
        raise _Refused(f"no SQLite database at {path} (config: {config.source})")
    lock = DatabaseLock(path)
    try:
        lock.acquire()  # held to the end: no daemon starts on the file while it is copied
    except AlreadyRunning as error:
        raise _Refused(f"{error}. Stop it first (systemctl stop mailticketd), so that no mail arrives during the "
                       "copy, then run migrate-database again") from None
    target = public_url(args.to)
    password = config.storage.password()
    started = time.monotonic()
    try:
        if not args.verify_only:
            async with SqliteDatabase(path):
                pass  # the source's schema brought up to date, as the target's is
        try:
            pg = await asyncpg.connect(args.to, password=password, timeout=10)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as error:
            raise _Refused(f"cannot connect to {target}: {error or type(error).__name__}") from None
        source = open_source(path)
        try:
            if not args.verify_only:
                try:
                    await check_empty(pg)
                except NotEmpty as error:
                    raise _Refused(f"{error}; give it an empty database (createdb -O USER NAME)") from None
                async with PostgresDatabase(args.to, password=password):
                    pass  # the schema, made under the migration lock
                await copy(source, pg, _Progress(sys.stderr))
            checks = await verify(source, pg, _Progress(sys.stderr).verifying)
            if sys.stderr.isatty():
                sys.stderr.write("\n")
        finally:
            source.close()
            await pg.close()
    finally:
        lock.release()
    view = {"source": str(path), "target": target, "copied": not args.verify_only,
            "ok": all(check.ok for check in checks), "seconds": round(time.monotonic() - started, 1),
            "tables": [check.view() for check in checks]}
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(_text(view, config))
    return EXIT_OK if view["ok"] else EXIT_MISMATCH


def _text(view: dict[str, Any], config: Config) -> str:
    lines = [f"{'table':<20} {'rows':>9} {'checksum (sha256)':<18} match"]
    for row in view["tables"]:
        rows = str(row["source_rows"]) if row["source_rows"] == row["target_rows"] else \
            f"{row['source_rows']}≠{row['target_rows']}"
        lines.append(f"{row['table']:<20} {rows:>9} {row['source_sha256'][:16]:<18} "
                     f"{'yes' if row['ok'] else 'NO'}")
    total = sum(row["source_rows"] for row in view["tables"])
    if not view["ok"]:
        bad = ", ".join(row["table"] for row in view["tables"] if not row["ok"])
        lines.append(f"MISMATCH: {bad} differ between {view['source']} and {view['target']}")
        return "\n".join(lines)
    done = "copied" if view["copied"] else "compared"
    lines.append(f"{done} {total} rows from {view['source']} to {view['target']} in {view['seconds']} s: every "
                 "table's rows and checksum match")
    if view["copied"]:
        lines.append(f"next: [storage] database = \"{view['target']}\" in the config of every host, then start "
                     "the daemons")
        if not config.mail.token_secrets and (config.storage.database.parent / SECRET_FILE).exists():
            lines.append(f"and [mail] token_secrets = [\"<the line in {config.storage.database.parent / SECRET_FILE}>"
                         "\"] on every host: the reply tokens of mails already sent are signed with it")
    return "\n".join(lines)


class _Progress:
    """A progress bar on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, table: str, done: int, total: int) -> None:
        if self.tty:
            width = 30
            filled = width if total == 0 else width * done // total
            self.stream.write(f"\rcopying {table:<20} [{'#' * filled}{' ' * (width - filled)}] {done}/{total}")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
            return
        now = time.monotonic()
        if done >= total:
            self.stream.write(f"copied {table}: {total} rows\n")
        elif done and now - self._last >= 5:
            self.stream.write(f"copying {table}: {done}/{total} rows\n")
        else:
            return
        self._last = now
        self.stream.flush()

    def verifying(self, table: str) -> None:
        self.stream.write(f"\rchecking {table:<40}" if self.tty else f"checking {table}\n")
        self.stream.flush()
