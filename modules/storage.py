"""One answer to "did this write fail because the disk is full?", for every layer.

A full disk shows up under several names: ``ENOSPC`` (no space left on the device), ``EDQUOT``
(the user's quota is used up), ``EFBIG`` (the file would pass the size limit of the file system
or of the process, ``RLIMIT_FSIZE``), and SQLite's ``SQLITE_FULL`` ("database or disk is full").
Every caller asks ``is_no_space`` instead of matching errno values or messages of its own, and
words the answer with ``no_space_message``, which never names a path: the message may reach a
client on another machine.

This module imports nothing of the project, so the model, processing and API layers can all use it.
"""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["NO_SPACE_ERRNOS", "SQLITE_FULL", "is_no_space", "no_space_message"]

#: The errno values that mean "no room for this write" (EDQUOT is missing on some platforms).
NO_SPACE_ERRNOS: frozenset[int] = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code is not None)
#: SQLite's primary result code for "database or disk is full" (https://www.sqlite.org/rescode.html).
SQLITE_FULL = 13


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was explicitly raised from, ``raise ... from``) says the
    disk, a quota or a file-size limit left no room for a write."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and (getattr(current, "sqlite_errorcode", 0) or 0) & 0xFF == SQLITE_FULL:
            return True
        current = current.__cause__
    return False


def no_space_message(what: str) -> str:
    """The sentence a person reads when ``what`` ("save the image") failed for lack of space."""
    return (f"Not enough disk space to {what}: the server's disk (or its quota) is full. "
            "Free some space on the server and try again.")
