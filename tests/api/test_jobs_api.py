"""Our job API on the live server: submit, follow (poll and server-sent events), list, cancel, images."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

TINY = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}


def _events(client: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", f"/jobs/{job_id}/events", params={"preview": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_submit_follow_events_and_fetch_the_image(jobs_api: httpx.Client) -> None:
    # 150 steps: the stream samples the job every 0.2 s, and a shorter tiny job can end between two samples
    body = jobs_api.post("/jobs", json={"type": "txt2img", "payload": {**TINY, "steps": 150}}).json()
    assert set(body) == {"id", "position", "warnings"} and body["warnings"] == []
    events = _events(jobs_api, body["id"])
    names = [name for name, _ in events]
    assert names[-1] == "succeeded" and "started" in names and names.count("progress") >= 1
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and all("preview" in data for name, data in events if name == "progress")
    final = events[-1][1]
    assert final["state"] == "done" and final["images"] == [f"/api/v1/jobs/{body['id']}/images/0"]
    png = jobs_api.get(f"/jobs/{body['id']}/images/0")
    image = Image.open(io.BytesIO(png.content))
    assert png.headers["content-type"] == "image/png" and image.size == (64, 64)
    assert "Seed: 3" in image.info["parameters"]
    assert jobs_api.get(f"/jobs/{body['id']}/images/5").status_code == 404


def test_list_cancel_and_errors(jobs_api: httpx.Client, api: httpx.Client) -> None:
    api.post("/txt2img", json=TINY)  # the blocking A1111 endpoint's job is listed too
    slow = jobs_api.post("/jobs", json={"type": "txt2img", "payload": {**TINY, "steps": 150}}).json()["id"]
    queued = jobs_api.post("/jobs", json={"type": "txt2img", "payload": TINY}).json()["id"]
    assert jobs_api.delete(f"/jobs/{queued}").json() == {"id": queued, "cancelled": True}
    assert jobs_api.delete(f"/jobs/{slow}").status_code == 200
    for job_id, state in ((queued, "cancelled"), (slow, "interrupted")):
        assert _events(jobs_api, job_id)[-1][0] == ("cancelled" if state == "cancelled" else "interrupted")
        assert jobs_api.get(f"/jobs/{job_id}").json()["state"] == state
    assert jobs_api.delete(f"/jobs/{queued}").status_code == 409  # already ended
    listing = jobs_api.get("/jobs", params={"limit": 3}).json()
    assert listing["total"] >= 4 and [j["id"] for j in listing["jobs"]][:2] == [queued, slow]
    assert jobs_api.get("/jobs/nope").status_code == 404
    too_far = jobs_api.get("/jobs", params={"offset": 2**64})  # past SQLite's 64-bit integers: a 422, not a 500
    assert too_far.status_code == 422 and "offset" in too_far.text
    for body, field in (({"type": "video", "payload": {}}, "type"), ({"type": "txt2img", "payload": {"steps": 0}},
                        "steps"), ({"type": "txt2img", "payload": []}, "payload")):
        response = jobs_api.post("/jobs", json=body)
        assert response.status_code == 422 and field in response.json()["detail"], response.text


def test_extras_job(jobs_api: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    import base64

    payload = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaling_resize": 2, "upscaler_1": "Lanczos"}
    job_id = jobs_api.post("/jobs", json={"type": "extras", "payload": payload}).json()["id"]
    assert _events(jobs_api, job_id)[-1][0] == "succeeded"
    assert Image.open(io.BytesIO(jobs_api.get(f"/jobs/{job_id}/images/0").content)).size == (32, 32)
