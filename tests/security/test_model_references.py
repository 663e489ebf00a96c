"""A client names models, never paths. On the shared server (``--listen --gradio-auth``), a
checkpoint or VAE given by an absolute path, including a real checkpoint the client has just
uploaded through gradio's ``/gradio_api/upload``, is refused in every place a client can name
one: ``POST /sdapi/v1/options``, ``override_settings`` of txt2img/img2img, the job API and
gradio's ``/set_checkpoint`` and ``/txt2img`` endpoints. The answer is a 422 (or a gradio error)
naming the field that says the same whether the path exists or not and reveals nothing about
the disk; the checkpoint in use does not change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import PASSWORD, USER, assert_reveals_nothing

BASE = {"prompt": "a red square", "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def gradio(server_url: str) -> Iterator[httpx.Client]:
    """A client logged in to the web UI (gradio's cookie), as a browser would be."""
    with httpx.Client(base_url=server_url, timeout=120) as client:
        login = client.post("/login", data={"username": USER, "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield client


@pytest.fixture(scope="module")
def uploaded(gradio: httpx.Client, data_dir: Path) -> str:
    """The server's path of a real checkpoint the client uploaded (gradio keeps it in its cache)."""
    checkpoint = data_dir / "models" / "Stable-diffusion" / "tiny-sd15.safetensors"
    answer = gradio.post("/gradio_api/upload", files=[("files", ("mine.safetensors", checkpoint.read_bytes()))])
    assert answer.status_code == 200, answer.text[:400]
    path = answer.json()[0]
    assert Path(path).is_file()  # the attack's premise: the file is on the server's disk
    return path


def _tried_paths(data_dir: Path, uploaded: str) -> dict[str, str]:
    """Paths a hostile client tries: its upload, the real checkpoint by path, and paths that do not exist."""
    inside = data_dir / "models" / "Stable-diffusion"
    return {"upload": uploaded, "real file": str(inside / "tiny-sd15.safetensors"),
            "missing": str(inside / "no-such-model.safetensors"), "elsewhere": "/etc/passwd",
            "escape": "../../../etc/hosts", "home": "~/model.safetensors"}


def _current(api: httpx.Client) -> str:
    """The checkpoint new jobs use, without the hash (a title gains it once the file is hashed)."""
    return api.get("/options").json()["sd_model_checkpoint"].split(" [")[0]


def test_options_refuse_a_checkpoint_or_vae_by_path(api: httpx.Client, data_dir: Path, uploaded: str) -> None:
    before = _current(api)
    messages = set()
    for tried in _tried_paths(data_dir, uploaded).values():
        answer = api.post("/options", json={"sd_model_checkpoint": tried})
        assert answer.status_code == 422 and answer.json()["detail"].startswith("sd_model_checkpoint: "), answer.text
        assert_reveals_nothing(answer, str(data_dir), tried)
        messages.add(answer.json()["detail"])
        vae = api.post("/options", json={"sd_vae": tried})
        assert vae.status_code == 422 and vae.json()["detail"].startswith("sd_vae: "), vae.text
        assert_reveals_nothing(vae, str(data_dir), tried)
    assert len(messages) == 1  # the same words whether the path exists or not
    assert _current(api) == before


def test_override_settings_refuse_a_checkpoint_by_path(api: httpx.Client, jobs_api: httpx.Client, data_dir: Path,
                                                       uploaded: str) -> None:
    before = _current(api)
    for tried in _tried_paths(data_dir, uploaded).values():
        for option in ("sd_model_checkpoint", "sd_vae"):
            answer = api.post("/txt2img", json={**BASE, "override_settings": {option: tried}})
            assert answer.status_code == 422, answer.text[:400]
            assert answer.json()["detail"].startswith(f"override_settings.{option}: ")
            assert_reveals_nothing(answer, str(data_dir), tried)
        top = api.post("/txt2img", json={**BASE, "sd_model_checkpoint": tried})
        assert top.status_code == 422 and top.json()["detail"].startswith("sd_model_checkpoint: ")
        assert_reveals_nothing(top, str(data_dir), tried)
        job = jobs_api.post("/jobs", json={"type": "txt2img", "payload": {
            **BASE, "override_settings": {"sd_model_checkpoint": tried}}})
        assert job.status_code == 422 and "override_settings.sd_model_checkpoint" in job.json()["detail"]
        assert_reveals_nothing(job, str(data_dir), tried)
    assert _current(api) == before


def _gradio_call(gradio: httpx.Client, name: str, data: list) -> str:
    """Call a named gradio endpoint over its HTTP API; returns the event stream's text."""
    started = gradio.post(f"/gradio_api/call/{name}", json={"data": data})
    assert started.status_code == 200, started.text[:400]
    return gradio.get(f"/gradio_api/call/{name}/{started.json()['event_id']}").text


def test_gradio_endpoints_refuse_a_checkpoint_by_path(gradio: httpx.Client, api: httpx.Client, data_dir: Path,
                                                      uploaded: str) -> None:
    before = _current(api)
    for tried in _tried_paths(data_dir, uploaded).values():
        stream = _gradio_call(gradio, "set_checkpoint", [tried])
        assert "event: error" in stream and "names a file path" in stream, stream[-400:]
        response = httpx.Response(200, text=stream)
        assert_reveals_nothing(response, str(data_dir), tried)
        generated = _gradio_call(gradio, "txt2img", ["a cat", "", 2, "Euler", "Automatic", 7.0, 1, -1, 0.0, 64, 64,
                                                     1, 1, 0, 0, False, tried, "", [], "", {}, {}, None])
        assert "event: error" in generated and "sd_model_checkpoint" in generated, generated[-400:]
        assert_reveals_nothing(httpx.Response(200, text=generated), str(data_dir), tried)
    assert _current(api) == before
    # A name still works, and a name the folder does not have is refused without a folder path.
    assert "event: complete" in _gradio_call(gradio, "set_checkpoint", ["tiny-sd15"])
    missing = _gradio_call(gradio, "set_checkpoint", ["dreamshaper_8"])
    assert "event: error" in missing and "dreamshaper_8" in missing and str(data_dir) not in missing
    assert _current(api) == before


def test_a_checkpoint_by_name_still_works(api: httpx.Client) -> None:
    answer = api.post("/txt2img", json={**BASE, "override_settings": {"sd_model_checkpoint": "tiny-sd15"}})
    assert answer.status_code == 200, answer.text[:400]
    assert "Model: tiny-sd15" in json.loads(answer.json()["info"])["infotexts"][0]


def test_the_owners_ckpt_flag_may_name_a_file_anywhere_a_client_may_not(tmp_path: Path) -> None:
    from tests.security.conftest import write_data_dir
    from tests.tiny_models import write_tiny_checkpoint
    from tests.ui.live_server import start_server

    data = write_data_dir(tmp_path / "data")
    elsewhere = write_tiny_checkpoint(tmp_path / "elsewhere", "sd15", name="owners-pick", seed=3)
    for url in start_server(data, "--listen", "--gradio-auth", f"{USER}:{PASSWORD}", "--ckpt", str(elsewhere)):
        with httpx.Client(base_url=url + "sdapi/v1", auth=(USER, PASSWORD), timeout=300) as api:
            assert _current(api) == "owners-pick.safetensors"
            answer = api.post("/txt2img", json=BASE)
            assert answer.status_code == 200, answer.text[:400]
            assert "Model: owners-pick" in json.loads(answer.json()["info"])["infotexts"][0]
            assert "owners-pick" in {m["model_name"] for m in api.get("/sd-models").json()}
            # By name, as a client names it, it works; by its path it does not, even though it is loaded.
            assert api.post("/txt2img", json={**BASE, "sd_model_checkpoint": "owners-pick"}).status_code == 200
            refused = api.post("/txt2img", json={**BASE, "sd_model_checkpoint": str(elsewhere)})
            assert refused.status_code == 422
            assert_reveals_nothing(refused, str(tmp_path), str(elsewhere))
