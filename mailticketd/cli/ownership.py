"""Files the CLI makes in the state directory stay the service's: root's CLI hands them to its owner.

An admin runs the CLI as root; the daemon runs as its own user.  A database,
a reply-token secret or a maildir folder that root created would be
unreadable or unwritable for the daemon at its next start.  SQLite itself
gives its ``-wal`` and ``-shm`` files to the database's owner when run as
root; this does the same for everything else the CLI may have made.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailticketd.config import Config
from mailticketd.tickets.tokens import SECRET_FILE


def hand_over(config: Config, *, maildir: bool = False) -> None:
    """As root, give root's files beside the database (and in the maildir) to the state directory's owner."""
    if os.geteuid() != 0:
        return
    database = config.storage.database
    state = config.storage.state_directory
    home = state if database.is_relative_to(state) else database.parent
    try:
        owner = home.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return  # a root-owned state directory: nothing to hand over
    paths = [folder for folder in database.parents if folder.is_relative_to(home) and folder != home]
    paths += [database.parent / name for name in
              (database.name, f"{database.name}-wal", f"{database.name}-shm", f"{database.name}.lock", SECRET_FILE)]
    if maildir:
        paths += _tree(config.outbound.maildir)
    for path in paths:
        try:
            if path.lstat().st_uid == 0:
                os.lchown(path, owner.st_uid, owner.st_gid)
        except FileNotFoundError:
            continue


def _tree(root: Path) -> list[Path]:
    found = [root]
    for folder, folders, files in os.walk(root):
        found += [Path(folder) / name for name in folders + files]
    return found
