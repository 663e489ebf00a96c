"""The durable side of the job queue: every job's payload and state in SQLite, so a restart
(or a crash) loses nothing that was accepted.

The in-memory ``JobQueue`` runs the jobs; this store records what it was asked to run and how
each job ended. On start, ``recover`` hands back the jobs to queue again:

- queued jobs stay queued, in their order;
- a job that was running when the process died is queued once more, with ``restarts`` 1;
- one that was running at two deaths is failed as a poison job and not tried again.

SQLite in WAL mode (https://www.sqlite.org/wal.html): readers never block the writer, and a
commit is durable once it returns. One connection per thread, as sqlite3 requires. A write that
finds the disk full raises ``StorageFullError`` and changes nothing (SQLite rolls it back).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.processing.errors import no_space_as_storage_full

__all__ = ["POISON_ERROR", "JobStore", "StoredJob"]

POISON_ERROR = "the server died twice while running this job; it is not tried again"
_WAL_CHECKPOINT_PAGES = 64  # about 256 KB of 4 KB pages; a job's three commits write about 36 KB
_WAL_SIZE_LIMIT_BYTES = 512 * 1024  # what a checkpoint truncates the WAL file back to, at most
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    error_code TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""


@dataclass(frozen=True)
class StoredJob:
    """One row: ``payload`` is what the job was submitted with (JSON, images as base64);
    ``result`` holds the saved files and infotexts of a finished job."""

    id: str
    kind: str
    payload: dict[str, Any]
    state: str
    restarts: int
    error: str | None
    error_code: str | None
    result: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None

    def summary(self) -> dict[str, Any]:
        """The row without its payload (which may hold megabytes of base64)."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "restarts": self.restarts,
                "error": self.error, "error_code": self.error_code, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "images": len(self.result.get("paths", []))}


def _row(row: sqlite3.Row) -> StoredJob:
    return StoredJob(row["id"], row["kind"], json.loads(row["payload"]), row["state"], row["restarts"],
                     row["error"], row["error_code"], json.loads(row["result"] or "{}"), row["created_at"],
                     row["started_at"], row["finished_at"])


class JobStore:
    """The jobs table in ``path`` (created with its folder). Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._writing() as db:
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "error_code" not in columns:  # a store written before failures had a code
                db.execute("ALTER TABLE jobs ADD COLUMN error_code TEXT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a crash
            # Keep the WAL small (SQLite's default lets it grow to 1000 pages, about 4 MB, per
            # checkpoint): on a nearly full disk the job records must still fit.
            db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT_BYTES}")
            self._local.db = db
        yield db

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The thread's connection for a write; a full disk becomes ``StorageFullError``."""
        with no_space_as_storage_full("record the job"), self._connection() as db:
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # an explicit transaction cut short: leave the connection usable
                    db.rollback()
                raise

    def add(self, job_id: str, kind: str, payload: Mapping[str, Any]) -> None:
        """Record a job just accepted (state "queued"). Raises StorageFullError on a full disk."""
        with self._writing() as db:
            db.execute("INSERT INTO jobs (id, kind, payload, state, created_at) VALUES (?, ?, ?, 'queued', ?)",
                       (job_id, kind, json.dumps(payload), time.time()))

    def forget(self, job_id: str) -> None:
        """Remove a job the queue refused after it was recorded."""
        with self._writing() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def mark_running(self, job_id: str) -> None:
        with self._writing() as db:
            db.execute("UPDATE jobs SET state = 'running', started_at = ? WHERE id = ?", (time.time(), job_id))

    def mark_finished(self, job_id: str, state: str, error: str | None = None,
                      result: Mapping[str, Any] | None = None, error_code: str | None = None) -> None:
        """Record a terminal state ("done", "failed", "interrupted", "cancelled")."""
        with self._writing() as db:
            db.execute("UPDATE jobs SET state = ?, error = ?, error_code = ?, result = ?, finished_at = ? "
                       "WHERE id = ?", (state, error, error_code, json.dumps(dict(result or {})), time.time(), job_id))

    def get(self, job_id: str) -> StoredJob | None:
        with self._connection() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row(row)

    def page(self, offset: int = 0, limit: int = 50, state: str | None = None) -> tuple[list[StoredJob], int]:
        """Jobs newest first, and how many there are (with ``state``, of that state only)."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        with self._connection() as db:
            total = db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]  # noqa: S608 - fixed text
            rows = db.execute(f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?",  # noqa: S608
                              (*args, limit, offset)).fetchall()
        return [_row(r) for r in rows], total

    def recover(self) -> list[StoredJob]:
        """After a restart: the jobs to queue again, oldest first (see the module docstring).

        Jobs that were running are counted as restarted; at their second restart they fail.
        """
        with self._writing() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE jobs SET restarts = restarts + 1, state = 'queued' WHERE state = 'running'")
            db.execute("UPDATE jobs SET state = 'failed', error = ?, finished_at = ? "
                       "WHERE state = 'queued' AND restarts >= 2", (POISON_ERROR, time.time()))
            rows = db.execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq").fetchall()
            db.execute("COMMIT")
        return [_row(r) for r in rows]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
