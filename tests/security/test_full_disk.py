"""A full disk, against a live server: every write that does not fit answers 507 with a clear
message (never a 500, never a path), leaves no torn file, and the server goes on serving.

The disk is "filled" with a file-size limit on the server process (``RLIMIT_FSIZE``, set on the
running process with ``prlimit(2)`` right after it started): a write past the limit fails with
``EFBIG``, which the server treats as it treats ``ENOSPC`` and ``EDQUOT`` (one classifier,
``modules.storage.is_no_space``). Python ignores ``SIGXFSZ``, so the process is not killed.

Sizes seen on the tiny SD1.x model: a 512x512 PNG is about 600 KB; ``config.json`` about 1 KB;
the job store's WAL grows by about 36 KB per job (three commits) and is checkpointed back at
64 pages, so it stays under about 280 KB (26 jobs seen; before the store bounded it, it reached
448 KB after 13 jobs and SQLite failed). ``LIMIT`` is above the WAL's bound and below an
image. The server also starts and runs under this limit from its first instruction (checked
by hand with ``prlimit --fsize``); the test sets it right after start-up, on the running
process, which needs no wrapper around the command ``launch_server`` runs.

Under ``RLIMIT_FSIZE`` SQLite reports ``EFBIG`` as "disk I/O error" (``SQLITE_IOERR_WRITE``), not
``SQLITE_FULL`` (which its unix VFS gives for ``ENOSPC``), so the test keeps SQLite's files under
the limit and checks the job store's own full-disk answer with SQLite's page limit instead
(tests/processing/output/test_storage_full.py).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import PASSWORD, USER, assert_reveals_nothing, write_data_dir
from tests.ui.live_server import launch_server

#: Largest file the server may write: well under a 512x512 PNG, well over its SQLite WAL here.
LIMIT = 448 * 1024
BIG_IMAGE = {"prompt": "a red apple", "width": 512, "height": 512, "steps": 1, "seed": 1}
SMALL_IMAGE = {"prompt": "a red apple", "width": 64, "height": 64, "steps": 1, "seed": 1}


@pytest.fixture(scope="module")
def full_disk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = write_data_dir(tmp_path_factory.mktemp("full-disk-data"))
    log = tmp_path_factory.mktemp("full-disk-log") / "server.log"
    process, url = launch_server(root, log, "--listen", "--gradio-auth", f"{USER}:{PASSWORD}")
    try:
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (LIMIT, LIMIT))
        yield url, root
    finally:
        process.terminate()
        process.wait(timeout=20)
        assert log.stat().st_size < LIMIT, "the server's log reached the limit: the test measured the wrong thing"


@pytest.fixture(scope="module")
def client(full_disk_server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=full_disk_server[0], auth=(USER, PASSWORD), timeout=300) as session:
        yield session


def _outputs(root: Path) -> list[Path]:
    folder = root / "outputs"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _assert_server_still_works(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200
    small = client.post("/sdapi/v1/txt2img", json={**SMALL_IMAGE, "save_images": False})
    assert small.status_code == 200, small.text[:400]
    assert len(small.json()["images"]) == 1


def test_saving_an_image_on_a_full_disk_answers_507_and_leaves_no_file(
        client: httpx.Client, full_disk_server: tuple[str, Path]) -> None:
    root = full_disk_server[1]
    response = client.post("/sdapi/v1/txt2img", json={**BIG_IMAGE, "save_images": True})
    assert response.status_code == 507, response.text[:400]
    assert "not enough disk space to save the image" in response.json()["detail"].lower()
    assert_reveals_nothing(response, str(root))
    assert _outputs(root) == []  # no torn PNG, no .tmp- file left behind
    _assert_server_still_works(client)


def test_a_job_that_finds_the_disk_full_is_failed_with_the_reason_and_kept(
        client: httpx.Client, full_disk_server: tuple[str, Path]) -> None:
    root = full_disk_server[1]
    submitted = client.post("/api/v1/jobs", json={"type": "txt2img", "payload": {**BIG_IMAGE, "save_images": True}})
    assert submitted.status_code == 200, submitted.text[:400]
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + 240
    while (job := client.get(f"/api/v1/jobs/{job_id}")).json()["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job.text
        time.sleep(0.2)
    body = job.json()
    assert body["state"] == "failed"
    assert body["error_code"] == "storage_full"
    assert "not enough disk space to save the image" in body["error"].lower()
    assert_reveals_nothing(job, str(root))
    listed = client.get("/api/v1/jobs", params={"state": "failed"}).json()["jobs"]
    assert any(entry["id"] == job_id and entry["error_code"] == "storage_full" for entry in listed)
    assert _outputs(root) == []
    _assert_server_still_works(client)


def test_a_settings_write_that_does_not_fit_answers_507_and_keeps_the_file(
        client: httpx.Client, full_disk_server: tuple[str, Path]) -> None:
    root = full_disk_server[1]
    assert client.post("/sdapi/v1/options", json={"eta_ddim": 0.25}).status_code == 200  # a small write fits
    before = (root / "config.json").read_bytes()
    # An A1111 option this studio only stores: its value makes config.json larger than the disk allows.
    response = client.post("/sdapi/v1/options", json={"sd_lora": "x" * (LIMIT + 1)})
    assert response.status_code == 507, response.text[:400]
    assert "not enough disk space to save the settings" in response.json()["detail"].lower()
    assert_reveals_nothing(response, str(root))
    assert (root / "config.json").read_bytes() == before  # the old file, whole
    assert json.loads(before)["eta_ddim"] == 0.25
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_lora"] != "x" * (LIMIT + 1) and options["eta_ddim"] == 0.25
    # The refused value was not kept in memory either: the next small write still fits.
    assert client.post("/sdapi/v1/options", json={"eta_ddim": 0.5}).status_code == 200
    assert json.loads((root / "config.json").read_bytes())["eta_ddim"] == 0.5
    _assert_server_still_works(client)
