"""A full disk in the engine: saving, the job store and the queue turn it into one typed
``StorageFullError`` with a clear message, and leave no torn file.

The save test runs in a child process with a real file-size limit (``RLIMIT_FSIZE``): past it,
``write`` fails with ``EFBIG`` (Python ignores ``SIGXFSZ``), as a full disk fails with ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modules.processing.errors import ProcessingError, StorageFullError, no_space_as_storage_full
from modules.processing.jobs.job import Job
from modules.processing.jobs.job_store import JobStore
from modules.processing.jobs.queue import JobQueue

REPO_ROOT = Path(__file__).resolve().parents[3]
LIMIT = 64 * 1024  # a 256x256 noise PNG is about 200 KB
_SAVE_SCRIPT = """
import json, sys
import numpy as np
from PIL import Image
from pathlib import Path
from modules.processing.output.saving import save_grid, save_image
noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
tiny = Image.new("RGB", (8, 8), "red")
folder = Path(sys.argv[1])
outcome = {"small": save_image(tiny, folder, "1", "steps: 1").name}
for name, save in (("image", lambda: save_image(noise, folder, "2", "x")), ("grid", lambda: save_grid(noise, folder))):
    try:
        save()
        outcome[name] = "saved"
    except Exception as error:
        outcome[name] = [type(error).__name__, str(error), isinstance(error, OSError)]
print(json.dumps(outcome))
"""


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_an_image_that_does_not_fit_is_a_storage_full_error_and_leaves_no_file(tmp_path: Path) -> None:
    folder = tmp_path / "outputs"
    done = subprocess.run([sys.executable, "-c", _SAVE_SCRIPT, str(folder)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_file_size, check=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["small"] == "00000-1.png"  # small writes still work under the limit
    for what in ("image", "grid"):
        kind, message, is_os_error = outcome[what]
        assert kind == "StorageFullError" and is_os_error
        assert message.startswith(f"Not enough disk space to save the {what}") and str(tmp_path) not in message
    assert sorted(p.name for p in folder.iterdir()) == ["00000-1.png"]  # no torn PNG, no .tmp- file


def test_the_translation_keeps_other_errors_as_they_are() -> None:
    with pytest.raises(PermissionError), no_space_as_storage_full("save the image"):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(StorageFullError) as raised, no_space_as_storage_full("save the image"):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/outputs/x.png")
    assert isinstance(raised.value.__cause__, OSError) and "/data" not in str(raised.value)


def test_a_job_store_write_on_a_full_database_is_a_storage_full_error_and_keeps_the_rows(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add("kept", "txt2img", {"payload": {"prompt": "small"}})
    with store._connection() as db:  # SQLite's own limit gives SQLITE_FULL, as a full disk does
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageFullError, match="Not enough disk space to record the job"):
        store.add("big", "txt2img", {"payload": {"prompt": "x" * 200_000}})
    assert store.get("big") is None
    store.mark_finished("kept", "failed", "Not enough disk space to save the image", error_code="storage_full")
    kept = store.get("kept")
    assert (kept.state, kept.error_code) == ("failed", "storage_full")
    assert kept.summary()["error_code"] == "storage_full"


def test_an_older_store_gets_the_error_code_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:  # the schema before failures had a code
        db.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, kind TEXT "
                   "NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, restarts INTEGER NOT NULL DEFAULT 0, "
                   "error TEXT, result TEXT, created_at REAL NOT NULL, started_at REAL, finished_at REAL)")
        db.execute("INSERT INTO jobs (id, kind, payload, state, created_at) "
                   "VALUES ('old', 'txt2img', '{}', 'done', 0)")
    store = JobStore(path)
    assert store.get("old").error_code is None and store.get("old").state == "done"


def test_the_queue_reports_a_storage_full_failure_by_its_code_and_plain_message() -> None:
    def run(job: Job) -> None:
        raise StorageFullError("save the image")

    def broken(job: Job) -> None:
        raise ProcessingError("something else")

    for engine, code, prefix in ((run, "storage_full", "Not enough disk space"),
                                 (broken, "server", "ProcessingError: something else")):
        queue = JobQueue(engine)
        queue.start()
        try:
            status = queue.wait(queue.submit(Job(threading.Event())), 10)
        finally:
            queue.close(timeout=10)
        assert status.state == "failed" and status.error_kind == code
        assert status.error is not None and status.error.startswith(prefix)
