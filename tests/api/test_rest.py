"""The A1111 REST API (/sdapi/v1) on the real server, as an unmodified A1111 client calls it."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.network_files import kohya_lora, write_embedding, write_lora
from tests.tiny_models import build_tiny_pipeline
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow


def test_txt2img_as_an_a1111_client_sends_it(api: httpx.Client) -> None:
    payload = {"prompt": "a blue square", "negative_prompt": "", "steps": 2, "width": 64, "height": 64,
               "seed": 9, "sampler_name": "Euler a", "scheduler": None, "cfg_scale": 7, "batch_size": 2,
               "n_iter": 1, "send_images": True, "save_images": False, "restore_faces": False,
               "enable_hr": False, "styles": [], "override_settings": {}, "alwayson_scripts": {}}
    response = api.post("/txt2img", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    info = json.loads(body["info"])
    assert info["all_seeds"] == [9, 10] and info["seed"] == 9
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == (64, 64) and "Seed: 9" in image.info["parameters"]
    png = api.post("/png-info", json={"image": body["images"][1]}).json()
    assert png["parameters"]["Seed"] == "10"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"prompt": "x", "steps": 0}, "steps"), ({"prompt": "x", "send_images": "no"}, "send_images"),
     ({"prompt": "x", "sampler_name": "Nope"}, "sampler_name"), ({"prompt": "x", "width": "wide"}, "width"),
     ({"prompt": "x", "sampler_name": "DDIM", "scheduler": "Karras"}, "scheduler"),
     ({"prompt": "x", "distilled_cfg_scale": "high"}, "distilled_cfg_scale"),
     ({"prompt": "x", "distilled_cfg_scale": 30.5}, "distilled_cfg_scale"),
     ({"prompt": "x", "distilled_cfg_scale": -1}, "distilled_cfg_scale")],
)
def test_bad_fields_are_422_naming_the_field(api: httpx.Client, payload: dict, field: str) -> None:
    response = api.post("/txt2img", json=payload)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_distilled_cfg_scale_is_accepted_and_dropped_by_sd(api: httpx.Client) -> None:
    """Forge's clients send it on every request; an SD model has no distilled guidance, so the
    value is accepted quietly, changes nothing and is not recorded as if it had been used (FLUX.1
    uses and records it: tests/families/flux/test_flux_front_ends.py)."""
    base = {"prompt": "a blue square", "steps": 2, "width": 64, "height": 64, "seed": 9, "sampler_name": "Euler"}
    plain = api.post("/txt2img", json=base).json()
    given = api.post("/txt2img", json={**base, "distilled_cfg_scale": 2.5})
    assert given.status_code == 200, given.text
    info = json.loads(given.json()["info"])
    assert info["warnings"] == [] and "Distilled CFG Scale" not in info["infotexts"][0]
    assert "Distilled CFG Scale" not in info["extra_generation_params"]
    assert given.json()["parameters"]["distilled_cfg_scale"] == 2.5  # the request, echoed as sent

    def pixels(body: dict) -> bytes:
        return Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).tobytes()

    assert pixels(given.json()) == pixels(plain)
    null = json.loads(api.post("/txt2img", json={**base, "distilled_cfg_scale": None}).json()["info"])
    assert "Distilled CFG Scale" not in null["infotexts"][0] and null["warnings"] == []
    source = base64.b64encode(base64.b64decode(plain["images"][0])).decode()
    img2img = api.post("/img2img", json={**base, "init_images": [source], "distilled_cfg_scale": 4})
    assert img2img.status_code == 200, img2img.text
    refused = api.post("/img2img", json={**base, "init_images": [source], "distilled_cfg_scale": [4]})
    assert refused.status_code == 422 and "distilled_cfg_scale" in refused.json()["detail"]


def test_bad_images_and_bodies_are_4xx(api: httpx.Client) -> None:
    assert api.post("/png-info", json={"image": "not an image"}).status_code == 422
    assert api.post("/txt2img", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert api.get("/progress").status_code == 200  # still alive


def test_listings_and_options(api: httpx.Client) -> None:
    samplers = {s["name"] for s in api.get("/samplers").json()}
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= samplers
    schedulers = api.get("/schedulers").json()
    assert [s["label"] for s in schedulers][:3] == ["Automatic", "Uniform", "Karras"] and len(schedulers) == 12
    assert {"align_your_steps", "kl_optimal", "sgm_uniform"} <= {s["name"] for s in schedulers}
    assert [s["default_rho"] for s in schedulers if s["default_rho"] != -1] == [7.0, 1.0]  # Karras, Polyexponential
    models = api.get("/sd-models").json()
    assert models[0]["model_name"] == "tiny-sd15"
    assert api.post("/options", json={"sd_model_checkpoint": "tiny-sd15"}).status_code == 200
    assert api.get("/options").json()["sd_model_checkpoint"].startswith("tiny-sd15.safetensors [")
    assert api.post("/options", json={"outdir_txt2img_samples": "/etc"}).status_code == 422
    inside = api.post("/options", json={"outdir_save": "outputs/elsewhere"})  # even inside the data dir
    assert inside.status_code == 422 and "not settable over the API" in inside.json()["detail"]
    assert api.post("/interrupt").json() == {"interrupted": False}


def test_api_shares_the_ui_credentials(data_dir: Path) -> None:
    for url in start_server(data_dir, "--gradio-auth", "alice:secret"):
        assert httpx.get(url + "sdapi/v1/samplers").status_code == 401
        assert httpx.get(url + "sdapi/v1/samplers", auth=("alice", "wrong")).status_code == 401
        assert httpx.get(url + "sdapi/v1/samplers", auth=("alice", "secret")).status_code == 200


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_img2img_inpaint_as_an_a1111_client_sends_it(api: httpx.Client) -> None:
    source = Image.new("RGB", (64, 64), (250, 200, 20))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (40, 40, 64, 64))
    payload = {"init_images": [_b64_png(source)], "mask": _b64_png(mask), "prompt": "a red circle", "steps": 3,
               "width": 64, "height": 64, "seed": 2, "sampler_name": "Euler a", "denoising_strength": 1.0,
               "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 32,
               "inpainting_mask_invert": 0, "resize_mode": 0, "image_cfg_scale": 1.5, "include_init_images": False,
               "send_images": True, "save_images": False, "override_settings": {}, "alwayson_scripts": {}}
    response = api.post("/img2img", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["parameters"]["init_images"] is None and body["parameters"]["denoising_strength"] == 1.0
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.getpixel((5, 5)) == (250, 200, 20)  # outside the mask: the input's own pixel
    assert "Denoising strength: 1" in image.info["parameters"] and "Mask blur: 0" in image.info["parameters"]


@pytest.mark.parametrize(("payload", "field", "status"), [
    ({"init_images": ["bm90IGFuIGltYWdl"]}, "init_images", 422),
    ({"init_images": [], "prompt": "x"}, "init_images", 422),
    ({"init_images": ["x"], "denoising_strength": 3}, "init_images", 422),
    ({"init_images": ["A" * (70 * 1024 * 1024)]}, "body", 413),  # over the body limit: refused unread
])
def test_bad_img2img_input_is_refused_naming_the_field(api: httpx.Client, payload: dict, field: str,
                                                        status: int) -> None:
    response = api.post("/img2img", json=payload)
    assert response.status_code == status and field in response.json()["detail"]


def test_loras_and_embeddings_are_listed_refreshed_and_used(api: httpx.Client, data_dir: Path) -> None:
    pipeline = build_tiny_pipeline("sd15")
    write_lora(data_dir / "models" / "Lora" / "ink.safetensors", kohya_lora(pipeline, scale=0.5),
               {"ss_output_name": "ink-v1"})
    write_embedding(data_dir / "models" / "embeddings" / "glow.safetensors", (32,), vectors=3)
    write_embedding(data_dir / "models" / "embeddings" / "xl-only.safetensors", (32, 48))
    assert api.get("/loras").json() == []  # not scanned yet: A1111 clients press refresh
    assert api.post("/refresh-loras").status_code == 200
    assert api.post("/refresh-embeddings").status_code == 200

    [lora] = api.get("/loras").json()
    assert lora["name"] == "ink" and lora["alias"] == "ink-v1" and lora["metadata"]["ss_output_name"] == "ink-v1"
    payload = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 4}
    plain = api.post("/txt2img", json=payload).json()
    styled = api.post("/txt2img", json={**payload, "prompt": "a cat <lora:ink:0.8> glow"}).json()
    info = json.loads(styled["info"])["infotexts"][0]
    assert 'Lora hashes: "ink: ' in info and 'TI hashes: "glow: ' in info
    assert styled["images"][0] != plain["images"][0]
    embeddings = api.get("/embeddings").json()
    assert embeddings["loaded"]["glow"]["vectors"] == 3 and embeddings["loaded"]["glow"]["shape"] == 32
    assert "xl-only" in embeddings["skipped"]  # the loaded SD1 model cannot use it


def _png(color: tuple[int, int, int], infotext: str | None = None) -> str:
    buffer = io.BytesIO()
    image = Image.new("RGB", (24, 16), color)
    if infotext:
        from PIL.PngImagePlugin import PngInfo

        chunk = PngInfo()
        chunk.add_text("parameters", infotext)
        image.save(buffer, format="PNG", pnginfo=chunk)
    else:
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_extras_upscale_with_a_model_as_an_a1111_client_does(api: httpx.Client, data_dir: Path) -> None:
    assert [u["name"] for u in api.get("/upscalers").json()] == ["None", "Lanczos", "Nearest", "2x-tiny"]
    assert api.get("/latent-upscale-modes").json()[0] == {"name": "Latent"}
    body = api.post("/extra-single-image", json={
        "image": _png((200, 30, 30), "a cat\nSteps: 20, Seed: 4"), "resize_mode": 0, "upscaling_resize": 2,
        "upscaler_1": "2x-tiny", "upscaler_2": "Lanczos", "extras_upscaler_2_visibility": 0.5,
        "gfpgan_visibility": 0, "codeformer_visibility": 0, "codeformer_weight": 0, "show_extras_results": True,
        "upscale_first": False})
    assert body.status_code == 200, body.text
    body = body.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    assert image.size == (48, 32)
    assert "Seed: 4" in body["html_info"] and "Postprocess upscaler: 2x-tiny" in body["html_info"]
    assert list((data_dir / "outputs" / "extras-images").rglob("*.png"))  # saved to extras-images/DATE


def test_extras_batch_and_its_errors(api: httpx.Client) -> None:
    body = api.post("/extra-batch-images", json={
        "imageList": [{"data": _png((0, 0, 255)), "name": "a.png"}, {"data": _png((0, 255, 0)), "name": "b.png"}],
        "resize_mode": 1, "upscaling_resize_w": 64, "upscaling_resize_h": 64, "upscaling_crop": True,
        "upscaler_1": "Nearest"}).json()
    sizes = [Image.open(io.BytesIO(base64.b64decode(data))).size for data in body["images"]]
    assert sizes == [(64, 64), (64, 64)]
    for payload, field in (({"image": _png((1, 1, 1)), "upscaler_1": "4x-missing"}, "upscaler_1"),
                           ({"image": _png((1, 1, 1)), "gfpgan_visibility": 2}, "gfpgan_visibility"),
                           ({"image": "not base64"}, "image")):
        response = api.post("/extra-single-image", json=payload)
        assert response.status_code == 422 and field in response.json()["detail"], response.text


def test_memory_unload_and_reload(api: httpx.Client) -> None:
    api.post("/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert [m["name"] for m in api.get("/memory").json()["models"]] == ["tiny-sd15"]
    assert api.post("/unload-checkpoint").status_code == 200
    assert api.get("/memory").json()["models"] == []
    api.post("/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64})
    assert api.post("/reload-checkpoint").status_code == 200
    assert [m["name"] for m in api.get("/memory").json()["models"]] == ["tiny-sd15"]


def test_listings_a1111_clients_read(api: httpx.Client, data_dir: Path) -> None:
    assert api.get("/sd-vae").json() == [] and api.post("/refresh-vae").status_code == 200
    assert api.get("/face-restorers").json() == []
    assert isinstance(api.get("/prompt-styles").json(), list)
    assert "dynamic-thresholding" in [e["name"] for e in api.get("/extensions").json()]
    flags = api.get("/cmd-flags").json()
    assert flags["data_dir"] == str(data_dir) and flags["api_auth"] is None


def test_cmd_flags_never_show_secrets() -> None:
    from modules.api.listings import public_flags

    shown = public_flags({"gradio_auth": "me:secret", "api_auth": None, "port": 7860, "data_dir": Path("/d")})
    assert shown == {"gradio_auth": "<hidden>", "api_auth": None, "port": 7860, "data_dir": "/d"}


def test_progress_shows_the_current_image_while_a_job_runs(api: httpx.Client) -> None:
    import threading

    done = threading.Event()

    def generate() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=120) as other:
            other.post("/txt2img", json={"prompt": "x", "steps": 150, "width": 64, "height": 64})
        done.set()

    threading.Thread(target=generate, daemon=True).start()
    seen = None
    while not done.is_set() and seen is None:
        body = api.get("/progress").json()
        if body["current_image"] and body["state"]["sampling_step"] > 0:
            seen = body
    done.wait(120)
    assert seen is not None, "no preview seen while the job ran"
    assert Image.open(io.BytesIO(base64.b64decode(seen["current_image"]))).size == (64, 64)
    assert api.get("/progress", params={"skip_current_image": True}).json()["current_image"] is None


def test_health_reports_the_server_and_answers_while_a_job_runs(api: httpx.Client) -> None:
    import threading
    import time

    root = str(api.base_url).removesuffix("sdapi/v1").removesuffix("sdapi/v1/")
    done = threading.Event()

    def generate() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=120) as other:
            other.post("/txt2img", json={"prompt": "x", "steps": 150, "width": 64, "height": 64})
        done.set()

    threading.Thread(target=generate, daemon=True).start()
    timings, seen_busy = [], False
    with httpx.Client(base_url=root, timeout=10) as client:
        while not done.is_set():
            started = time.perf_counter()
            body = client.get("/health").json()
            timings.append(time.perf_counter() - started)
            seen_busy = seen_busy or body["running_job"] is not None
    done.wait(120)
    assert body["status"] == "ok" and body["device"] == "cpu" and body["version"].startswith("aigen-v")
    assert body["loaded_models"] == ["tiny-sd15"] and body["queue_length"] == 0
    assert seen_busy and timings  # the latency itself is reported by bench, not asserted here


def test_an_oversized_body_is_413_and_the_server_lives_on(api: httpx.Client) -> None:
    huge = b'{"prompt": "' + b"x" * (65 * 2**20) + b'"}'
    response = api.post("/txt2img", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert api.post("/txt2img", content=b"[" * 50_000, headers={"content-type": "application/json"}).status_code \
        in (400, 422)
    assert api.get("/progress").status_code == 200


def test_a_request_with_only_a_prompt_uses_a1111_api_defaults(api: httpx.Client) -> None:
    body = api.post("/txt2img", json={"prompt": "a cat"}).json()
    info = json.loads(body["info"])
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == (512, 512) and "Steps: 20" in info["infotexts"][0]


def test_save_images_send_images_and_sampler_index_as_a1111(api: httpx.Client, data_dir: Path) -> None:
    folder = data_dir / "outputs" / "txt2img-images"
    before = set(folder.rglob("*.png")) if folder.exists() else set()
    tiny = {"prompt": "x", "steps": 1, "width": 64, "height": 64}
    body = api.post("/txt2img", json={**tiny, "sampler_index": "DDIM", "send_images": False}).json()
    assert body["images"] == [] and "Sampler: DDIM" in json.loads(body["info"])["infotexts"][0]
    assert (set(folder.rglob("*.png")) if folder.exists() else set()) == before  # save_images defaults to false
    api.post("/txt2img", json={**tiny, "save_images": True})
    assert len(set(folder.rglob("*.png")) - before) == 1
