"""On a server others can reach (``--listen``), the Checkpoint Merger writes nothing, as model
install and delete write nothing: every front end that can start a merge is refused with the
same rule's message, and no file appears in the model folder."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modules.models.merge import CONFIG_SOURCES
from tests.security.conftest import PASSWORD, USER, assert_reveals_nothing

pytestmark = pytest.mark.slow
RULE = "--enable-insecure-extension-access"


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[httpx.Client]:
    """A browser's session: logged in through gradio's form."""
    with httpx.Client(base_url=server_url, timeout=120) as client:
        assert client.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
        yield client


def _call_event(page: httpx.Client, elem_id: str, data: list[Any]) -> dict[str, Any]:
    """Run the click handler of the button ``elem_id`` as the page does (gradio's queue, by
    fn_index: the handler is private to the API, but a client can still post to the queue)."""
    config = page.get("config").json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    event = next(d for d in config["dependencies"] if [button, "click"] in [list(t) for t in d["targets"]])
    session = uuid.uuid4().hex
    joined = page.post("gradio_api/queue/join", json={"data": data, "fn_index": event["id"], "session_hash": session,
                                                       "event_data": None, "trigger_id": button})
    assert joined.status_code == 200, joined.text
    with page.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the queue never finished the event")


def _models(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "models" / "Stable-diffusion").rglob("*")}


def test_the_merger_is_refused_on_listen_as_installing_is(page: httpx.Client, data_dir: Path) -> None:
    before = _models(data_dir)
    fields = ["tiny-sd15.safetensors", "tiny-sd15.safetensors", "", "evil-merge", 0.5, "Weighted sum", False,
              CONFIG_SOURCES[0], "None", ""]
    merged = _call_event(page, "modelmerger_merge", fields)
    assert merged["success"] is False and RULE in json.dumps(merged["output"]), merged
    # Deleting is refused by the same rule (installing is not even wired on such a server).
    deleted = _call_event(page, "models_delete", ["Checkpoints", "tiny-sd15", True])
    assert deleted["success"] is False and RULE in json.dumps(deleted["output"]), deleted
    assert not [d for d in page.get("config").json()["components"]
                if d.get("props", {}).get("elem_id") == "modelmerger_merge" and d["props"].get("interactive")]
    assert _models(data_dir) == before, "a refused merge must not write the model folder"


def test_no_rest_route_merges(api: httpx.Client, data_dir: Path) -> None:
    """A1111's API has no merge route, nor has ours: whatever a client tries is not found."""
    for path in ("/merge", "/merge-checkpoints", "/modelmerger", "/checkpoint-merger"):
        answer = api.post(path, json={"primary_model_name": "tiny-sd15", "secondary_model_name": "tiny-sd15"})
        assert answer.status_code in (404, 405)
        assert_reveals_nothing(answer, str(data_dir))
    assert not [name for name in _models(data_dir) if "merge" in name]
