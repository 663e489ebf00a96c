"""A server killed with SIGKILL mid-job loses nothing: after a restart the queued jobs are
still there and complete, the one that was running runs again, and no torn PNG is left."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.tiny_models import write_tiny_checkpoint
from tests.ui.live_server import launch_server

pytestmark = pytest.mark.slow

JOB = {"type": "txt2img", "payload": {"prompt": "a cat", "steps": 40, "width": 64, "height": 64,
                                      "save_images": True}}


def _wait_running(client: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/jobs/{job_id}").json()["state"] != "running":
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.05)


def test_kill_9_mid_job_then_restart_completes_every_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_tiny_checkpoint(data_dir / "models" / "Stable-diffusion", "sd15")
    log = tmp_path / "server.log"
    process, url = launch_server(data_dir, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            ids = [client.post("/api/v1/jobs", json=JOB).json()["id"] for _ in range(10)]
            _wait_running(client, ids[0])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    process, url = launch_server(data_dir, log)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 240
            states: dict[str, str] = {}
            while time.monotonic() < deadline:
                states = {job_id: client.get(f"/api/v1/jobs/{job_id}").json()["state"] for job_id in ids}
                if all(state in ("done", "failed", "interrupted", "cancelled") for state in states.values()):
                    break
                time.sleep(0.5)
            assert states == {job_id: "done" for job_id in ids}
            first = client.get(f"/api/v1/jobs/{ids[0]}").json()
            assert first["restarts"] == 1  # it was running at the kill and ran once more
    finally:
        process.terminate()
        process.wait(timeout=30)
    pngs = list((data_dir / "outputs").rglob("*.png"))
    for png in pngs:
        with Image.open(png) as image:
            image.verify()  # complete files only: saving is write-then-rename
    assert len(pngs) >= 10 and not list((data_dir / "outputs").rglob(".tmp-*"))
