"""A1111 clients unmodified, through the real HTTP routes: the tolerant reader (unknown fields
ignored and reported, known ones strict), every option key, options that change the image,
A1111's response shape, and interrupted jobs that still return their images."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from modules.processing.output.image_formats import embedded_infotext

pytestmark = pytest.mark.slow

BASE = {"prompt": "a red square", "steps": 2, "width": 64, "height": 64, "seed": 7, "sampler_name": "Euler a"}
# A long job (many batches of many steps), so an interrupt surely lands while it runs.
LONG = {**BASE, "steps": 150, "n_iter": 50}


def _info(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(body["info"])


def _image(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _png(color: tuple[int, int, int] = (200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def options(api: httpx.Client) -> Iterator[Callable[[dict[str, Any]], httpx.Response]]:
    """POST /options, putting every key it changed back afterwards (the server is shared)."""
    before = api.get("/options").json()
    changed: set[str] = set()

    def post(changes: dict[str, Any]) -> httpx.Response:
        changed.update(changes)
        return api.post("/options", json=changes)

    yield post
    api.post("/options", json={key: before[key] for key in changed if key in before})


def test_unknown_fields_are_ignored_and_reported_known_ones_stay_strict(api: httpx.Client) -> None:
    extra = {"seed_enable_extras": True, "hr_force": True, "include_init_images": False}
    plain = api.post("/txt2img", json=BASE).json()
    tolerant = api.post("/txt2img", json={**BASE, **extra})
    assert tolerant.status_code == 200, tolerant.text
    warnings = _info(tolerant.json())["warnings"]
    # include_init_images is an img2img field: on txt2img it is unknown too, as in A1111.
    assert [w.split(":")[0] for w in warnings] == list(extra)
    assert tolerant.json()["images"] == plain["images"]  # ignored means: the same image
    assert _info(plain)["warnings"] == []
    for payload, field in (({"steps": "2"}, "steps"), ({"width": 5000}, "width"), ({"send_images": 1}, "send_images"),
                           ({"override_settings": {"samples_format": "gif"}}, "samples_format")):
        refused = api.post("/txt2img", json={**BASE, **payload, "seed_enable_extras": True})
        assert refused.status_code == 422 and field in refused.json()["detail"], refused.text


def test_img2img_extras_and_job_api_read_tolerantly(api: httpx.Client, jobs_api: httpx.Client) -> None:
    img2img = api.post("/img2img", json={**BASE, "init_images": [_png()], "include_init_images": True,
                                         "initial_noise_multiplier": 0.9, "enable_hr": True, "hr_sampler_name": "x"})
    assert img2img.status_code == 200, img2img.text
    assert [w.split(":")[0] for w in _info(img2img.json())["warnings"]] == ["enable_hr", "hr_sampler_name"]
    assert "Noise multiplier: 0.9" in _info(img2img.json())["infotexts"][0]
    extras = api.post("/extra-single-image", json={"image": _png(), "upscaler_1": "Nearest", "upscaling_resize": 2,
                                                   "model": "4x-UltraSharp"})
    assert extras.status_code == 200 and _image(extras.json()["image"]).size == (128, 128)
    assert [w.split(":")[0] for w in extras.json()["warnings"]] == ["model"]
    submitted = jobs_api.post("/jobs", json={"type": "txt2img", "payload": {**BASE, "seed_enable_extras": True}})
    assert submitted.status_code == 200 and submitted.json()["warnings"][0].startswith("seed_enable_extras")


def test_features_not_here_are_notices(api: httpx.Client) -> None:
    body = api.post("/txt2img", json={**BASE, "restore_faces": True, "styles": ["No such style"]})
    assert body.status_code == 200, body.text
    notices = _info(body.json())["notices"]
    assert any(n.startswith("restore_faces") and "not installed" in n for n in notices)
    assert any(n.startswith("styles") and "'No such style'" in n for n in notices)
    faces = api.post("/extra-single-image", json={"image": _png(), "upscaler_1": "None", "gfpgan_visibility": 1})
    assert faces.status_code == 200 and faces.json()["notices"][0].startswith("gfpgan_visibility")


def test_info_and_parameters_have_a1111s_keys(api: httpx.Client) -> None:
    body = api.post("/txt2img", json={**BASE, "batch_size": 2}).json()
    info = _info(body)
    for key in ("prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
                "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps",
                "batch_size", "restore_faces", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
                "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
                "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip", "version"):
        assert key in info, key
    assert (info["width"], info["height"], info["steps"], info["all_seeds"]) == (64, 64, 2, [7, 8])
    assert info["sd_model_name"] == "tiny-sd15" and len(info["sd_model_hash"]) == 10
    assert info["all_prompts"] == ["a red square"] * 2 and len(info["job_timestamp"]) == 14
    parameters = body["parameters"]
    assert parameters["steps"] == 2 and parameters["enable_hr"] is False and parameters["hr_scale"] == 2.0
    assert {"s_churn", "override_settings", "alwayson_scripts", "script_args", "firstphase_width"} <= set(parameters)


def test_idle_progress_has_a1111s_state(api: httpx.Client) -> None:
    # webuiapi.util_wait_for_ready reads state.job_count until it is 0.
    state = api.get("/progress").json()["state"]
    assert state["job_count"] == 0
    assert set(state) >= {"skipped", "interrupted", "stopping_generation", "job", "job_count", "job_timestamp",
                          "job_no", "sampling_step", "sampling_steps"}


def test_options_answer_every_a1111_key_and_take_unknown_ones(api: httpx.Client, options: Callable) -> None:
    current = api.get("/options").json()
    assert len(current) > 300
    assert (current["send_seed"], current["jpeg_quality"], current["randn_source"]) == (True, 80, "CPU")
    assert current["sd_model_checkpoint"].startswith("tiny-sd15")
    answer = options({"send_seed": False, "forge_preset": "xl", "eta_noise_seed_delta": 5})
    assert answer.status_code == 200, answer.text
    assert [w.split(":")[0] for w in answer.json()["warnings"]] == ["send_seed", "forge_preset"]
    after = api.get("/options").json()
    assert (after["send_seed"], after["eta_noise_seed_delta"]) == (False, 5) and "forge_preset" not in after
    refused = options({"eta_noise_seed_delta": "big", "send_seed": True})
    assert refused.status_code == 422 and "eta_noise_seed_delta" in refused.json()["detail"]
    assert api.get("/options").json()["send_seed"] is False  # a refused POST changes nothing


def test_ensd_from_options_or_override_changes_ancestral_images(api: httpx.Client, options: Callable) -> None:
    plain = api.post("/txt2img", json=BASE).json()
    overridden = api.post("/txt2img", json={**BASE, "override_settings": {"eta_noise_seed_delta": 31337}}).json()
    assert overridden["images"] != plain["images"]
    assert "ENSD: 31337" in _info(overridden)["infotexts"][0] and "ENSD" not in _info(plain)["infotexts"][0]
    assert options({"eta_noise_seed_delta": 31337}).status_code == 200
    from_options = api.post("/txt2img", json=BASE).json()
    assert from_options["images"] == overridden["images"]


def test_rng_source_is_recorded_and_gpu_equals_cpu_without_a_gpu(api: httpx.Client, server_url: str) -> None:
    cpu = api.post("/txt2img", json=BASE).json()
    gpu = api.post("/txt2img", json={**BASE, "override_settings": {"randn_source": "GPU"}}).json()
    assert "RNG: CPU" in _info(cpu)["infotexts"][0] and "RNG" not in _info(gpu)["infotexts"][0]
    if httpx.get(server_url + "health").json()["device"] == "cpu":
        # No CUDA device: "GPU" draws on the CPU, as A1111 does, so only the infotext differs.
        assert _image(gpu["images"][0]).tobytes() == _image(cpu["images"][0]).tobytes()
    refused = api.post("/txt2img", json={**BASE, "override_settings": {"randn_source": "NV"}})
    assert refused.status_code == 422 and "randn_source" in refused.json()["detail"]


@pytest.mark.parametrize(("samples_format", "pil_format"), [("jpg", "JPEG"), ("webp", "WEBP")])
def test_samples_format_encodes_answers_and_files_with_the_infotext(api: httpx.Client, data_dir: Path,
                                                                    samples_format: str, pil_format: str) -> None:
    body = api.post("/txt2img", json={**BASE, "save_images": True,
                                      "override_settings": {"samples_format": samples_format}}).json()
    image = _image(body["images"][0])
    assert image.format == pil_format and "Seed: 7" in embedded_infotext(image)
    assert api.post("/png-info", json={"image": body["images"][0]}).json()["parameters"]["Seed"] == "7"
    saved = sorted((data_dir / "outputs" / "txt2img-images").rglob(f"*.{samples_format}"))
    assert saved and "Seed: 7" in embedded_infotext(Image.open(saved[-1]))


def _interrupt_when_running(api: httpx.Client, stop: Callable[[], object]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.get("/progress", params={"skip_current_image": True}).json()["state"]["sampling_step"] >= 2:
            stop()
            return
        time.sleep(0.05)
    raise AssertionError("the job never got to step 2")


def test_an_interrupted_job_returns_its_images(api: httpx.Client) -> None:
    answer: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: answer.update(response=api.post("/txt2img", json=LONG)))
    worker.start()
    _interrupt_when_running(api, lambda: api.post("/interrupt"))
    worker.join(120)
    response = answer["response"]
    assert response.status_code == 200, response.text
    info = _info(response.json())
    assert info["interrupted"] is True
    images = response.json()["images"]
    assert 1 <= len(images) < LONG["n_iter"] and len(info["infotexts"]) == len(images)
    assert "Seed: 7" in embedded_infotext(_image(images[0]))


def test_job_api_and_gradio_client_return_interrupted_images(api: httpx.Client, jobs_api: httpx.Client,
                                                             server_url: str) -> None:
    job_id = jobs_api.post("/jobs", json={"type": "txt2img", "payload": LONG}).json()["id"]
    _interrupt_when_running(api, lambda: jobs_api.delete(f"/jobs/{job_id}"))
    deadline = time.monotonic() + 60
    while (job := jobs_api.get(f"/jobs/{job_id}").json())["state"] not in ("interrupted", "done"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["state"] == "interrupted" and job["images"]
    assert jobs_api.get(f"/jobs/{job_id}/images/0").headers["content-type"] == "image/png"

    from gradio_client import Client

    client = Client(server_url, verbose=False)
    pending = client.submit(prompt="x", steps=150, width=64, height=64, n_iter=50, seed=3, api_name="/txt2img")
    _interrupt_when_running(api, lambda: client.predict(api_name="/interrupt"))
    result = pending.result(timeout=120)
    assert result["interrupted"] is True and 1 <= len(result["images"]) < 50
