"""Bounded load on loopback: 32 clients × 4 txt2img requests against a small queue.

Every request ends as exactly one of: 200 with a valid, unique image, or 429 with Retry-After
(the queue was full). Every accepted job ends "done" in the job list. Latency figures are the
bench's business (bench/api_load.py), not asserted here.
"""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CLIENTS, REQUESTS = 32, 4


def _client_run(base_url: str, client_index: int) -> list[tuple[int, dict]]:
    outcomes = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for k in range(REQUESTS):
            seed = client_index * REQUESTS + k
            response = client.post("/txt2img", json={"prompt": "load", "steps": 1, "width": 64, "height": 64,
                                                     "seed": seed})
            body = response.json()
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) > 0
            outcomes.append((response.status_code, body))
    return outcomes


def test_32_clients_each_get_an_image_or_a_429(api: httpx.Client, jobs_api: httpx.Client) -> None:
    assert api.post("/options", json={"queue_max_pending": 8}).status_code == 200
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            runs = list(pool.map(lambda i: _client_run(str(api.base_url), i), range(CLIENTS)))
    finally:
        api.post("/options", json={"queue_max_pending": 64})
    outcomes = [outcome for run in runs for outcome in run]
    assert len(outcomes) == CLIENTS * REQUESTS
    assert {status for status, _ in outcomes} <= {200, 429}
    accepted = [body for status, body in outcomes if status == 200]
    assert accepted, "no request was accepted"
    assert any(status == 429 for status, _ in outcomes), "32 clients never filled a queue of 8"
    infos = [json.loads(body["info"]) for body in accepted]
    job_ids = [info["job_id"] for info in infos]
    assert len(set(job_ids)) == len(job_ids) and len({info["seed"] for info in infos}) == len(infos)
    for body in accepted:
        image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
        image.verify()
    for job_id in job_ids:
        assert jobs_api.get(f"/jobs/{job_id}").json()["state"] == "done"
