"""The one "is the disk full?" classifier every layer asks."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from modules.storage import is_no_space, no_space_message


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_no_space_full_quota_and_file_size_limit_all_mean_no_space(code: int) -> None:
    assert is_no_space(OSError(code, "x", "/data/outputs/00001.png"))


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.EROFS, errno.ENOENT, None])
def test_other_write_failures_are_not_called_a_full_disk(code: int | None) -> None:
    assert not is_no_space(OSError(code, "x") if code is not None else OSError("no errno"))
    assert not is_no_space(ValueError("No space left on device"))  # never a match on words


def test_sqlite_database_or_disk_is_full_means_no_space() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA max_page_count = 2")  # SQLite's own "full" (SQLITE_FULL), as on a full disk
    db.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as raised:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    assert is_no_space(raised.value)
    assert not is_no_space(sqlite3.OperationalError("no such table: jobs"))


def test_an_error_raised_from_a_no_space_error_counts_but_one_raised_while_handling_does_not() -> None:
    cause = OSError(errno.ENOSPC, "No space left on device")
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = cause
    assert is_no_space(wrapped)
    unrelated = RuntimeError("cleanup failed")
    unrelated.__context__ = cause  # only an explicit ``raise ... from`` says "because of"
    assert not is_no_space(unrelated)


def test_the_message_says_what_failed_and_what_to_do_without_a_path() -> None:
    message = no_space_message("save the image")
    assert message.startswith("Not enough disk space to save the image")
    assert "Free some space" in message and "/" not in message
