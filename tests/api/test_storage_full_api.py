"""The API's answer to a full disk: 507 with the message and no path, from a refused submission,
a failed job, or any route whose write finds no room; every other error keeps its own answer."""

from __future__ import annotations

import errno
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from modules.api.jobs import build_jobs_router, failed_job_error, http_error, storage_full_handlers
from modules.processing.errors import StorageFullError
from modules.processing.jobs.queue import JobStatus


def _app() -> FastAPI:
    app = FastAPI(exception_handlers=storage_full_handlers())

    @app.get("/typed")
    def typed() -> None:
        raise StorageFullError("save the image")

    @app.get("/raw-os")
    def raw_os() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/aigen/outputs/00001.png")

    @app.get("/raw-sqlite")
    def raw_sqlite() -> None:
        db = sqlite3.connect(":memory:")
        db.execute("PRAGMA max_page_count = 2")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")

    @app.get("/denied")
    def denied() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/aigen/outputs")

    return app


@pytest.mark.parametrize("route", ["/typed", "/raw-os", "/raw-sqlite"])
def test_a_write_that_finds_no_room_anywhere_is_507_without_a_path(route: str) -> None:
    response = TestClient(_app()).get(route)
    assert response.status_code == 507
    assert response.json()["detail"].startswith("Not enough disk space to ") and "/srv" not in response.text


def test_any_other_os_error_stays_a_server_fault_without_details() -> None:
    response = TestClient(_app(), raise_server_exceptions=False).get("/denied")
    assert response.status_code == 500 and "/srv" not in response.text


def test_a_submission_refused_for_a_full_job_store_is_507() -> None:
    def refuse(payload: Any) -> str:
        raise StorageFullError("record the job")

    studio = SimpleNamespace(submit_txt2img=refuse)
    app = FastAPI()
    app.include_router(build_jobs_router(studio, lambda data, field: data, []))  # type: ignore[arg-type]
    response = TestClient(app).post("/api/v1/jobs", json={"type": "txt2img", "payload": {"prompt": "x"}})
    assert response.status_code == 507 and "record the job" in response.json()["detail"]
    assert http_error(StorageFullError("x")).status_code == 507


def test_a_failed_job_is_507_only_when_the_disk_was_full() -> None:
    full = JobStatus("a", "failed", None, error="Not enough disk space to save the image", error_kind="storage_full")
    broken = JobStatus("b", "failed", None, error="RuntimeError: boom")
    assert isinstance(failed_job_error(full), HTTPException) and failed_job_error(full).status_code == 507
    assert failed_job_error(broken).status_code == 500
