"""FLUX.1 through every front end, as users reach it: A1111's REST API, gradio_client and the
command line, on a live server whose data folder holds a FLUX.1-dev transformer file with its
VAE and text encoders in models/VAE and models/text_encoder (Forge's layout). The same request
gives the same image on each, and the FLUX-only fields (Distilled CFG Scale, the chosen parts)
are validated, used and recorded."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from modules import cli
from tests.families.flux.tiny_flux_install import install_tiny_flux
from tests.tiny_controlnet import write_tiny_controlnet
from tests.tiny_models import build_tiny_pipeline
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow

BASE: dict[str, Any] = {"prompt": "a red fox in the snow", "steps": 3, "width": 64, "height": 64, "seed": 11,
                        "sampler_name": "Euler", "cfg_scale": 1}
PARTS = "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux-data")
    install_tiny_flux(root / "models", "bfl")
    # An SD1.x ControlNet: FLUX.1 has no ControlNet here yet, so a unit naming it is refused.
    write_tiny_controlnet(root / "models" / "ControlNet" / "tiny-control-sd15", build_tiny_pipeline("sd15").unet)
    return root


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[str]:
    yield from start_server(data_dir)


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server + "sdapi/v1", timeout=120) as client:
        yield client


def _pixels(encoded: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"), dtype=np.int16)


def _grey() -> Image.Image:
    return Image.new("RGB", (64, 64), (128, 128, 128))


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _txt2img(api: httpx.Client, **fields: Any) -> tuple[np.ndarray, str]:
    response = api.post("/txt2img", json={**BASE, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    return _pixels(body["images"][0]), json.loads(body["info"])["infotexts"][0]


@pytest.fixture(scope="module")
def reference(api: httpx.Client) -> tuple[np.ndarray, str]:
    """BASE through REST: the image every other front end must reproduce."""
    return _txt2img(api)


def test_rest_runs_flux_and_records_its_guidance_and_parts(api: httpx.Client,
                                                           reference: tuple[np.ndarray, str]) -> None:
    image, infotext = reference
    assert image.std() > 5
    assert "Distilled CFG Scale: 3.5," in infotext and PARTS in infotext and "Model: flux1-dev," in infotext
    assert "Schedule type: Simple," in infotext  # the schedule that ran (Forge's name), not an SD default
    assert api.get("/sd-models").json()[0]["model_name"] == "flux1-dev"
    weaker, weaker_info = _txt2img(api, distilled_cfg_scale=1.5)
    assert np.abs(weaker - image).mean() > 1 and "Distilled CFG Scale: 1.5," in weaker_info
    # Forge's clients choose the parts as a setting; these are the files automatic choice finds.
    chosen = api.post("/txt2img", json={**BASE, "override_settings": {
        "forge_additional_modules": ["ae.safetensors", "clip_l", "t5xxl_fp16"]}})
    assert chosen.status_code == 200 and json.loads(chosen.json()["info"])["warnings"] == []
    assert np.array_equal(_pixels(chosen.json()["images"][0]), image)
    # A1111's infotext field reads it all back: prompt, sampler, seed, guidance and parts.
    pasted = api.post("/txt2img", json={"infotext": infotext})
    assert pasted.status_code == 200, pasted.text
    assert np.array_equal(_pixels(pasted.json()["images"][0]), image)
    assert PARTS in json.loads(pasted.json()["info"])["infotexts"][0]


CONTROLNET_UNIT = {"enabled": True, "model": "tiny-control-sd15", "module": "none", "image": _png(_grey())}


@pytest.mark.parametrize(("fields", "named"), [
    ({"override_settings": {"forge_additional_modules": ["no-such-encoder"]}}, "forge_additional_modules"),
    ({"override_settings": {"forge_additional_modules": [3]}}, "forge_additional_modules"),
    ({"sampler_name": "DPM2"}, "sampler_name"),
    ({"scheduler": "Karras"}, "scheduler"),
    ({"distilled_cfg_scale": 31}, "distilled_cfg_scale"),
    ({"alwayson_scripts": {"ControlNet": {"args": [CONTROLNET_UNIT]}}}, "alwayson_scripts.ControlNet.args[0]"),
    # UNet-shaped patches: FLUX.1 has no UNet to apply them to
    ({"alwayson_scripts": {"FreeU": {"args": {"enabled": True, "preset": "Custom"}}}}, "alwayson_scripts.FreeU"),
    ({"alwayson_scripts": {"Perturbed-Attention Guidance": {"args": {"enabled": True}}}},
     "alwayson_scripts.Perturbed-Attention Guidance"),
])
def test_bad_flux_fields_are_422_naming_the_field(api: httpx.Client, fields: dict, named: str) -> None:
    response = api.post("/txt2img", json={**BASE, **fields})
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"] and "Traceback" not in response.text
    assert api.post("/txt2img", json={**BASE, "steps": 1}).status_code == 200  # the server goes on


def test_img2img_runs_flux_from_an_image(api: httpx.Client, reference: tuple[np.ndarray, str]) -> None:
    source = _png(Image.fromarray(reference[0].astype(np.uint8)))
    response = api.post("/img2img", json={**BASE, "init_images": [source], "denoising_strength": 0.3})
    assert response.status_code == 200, response.text
    image = _pixels(response.json()["images"][0])
    assert image.shape == reference[0].shape and np.abs(image - reference[0]).mean() < 40
    assert "Denoising strength: 0.3" in json.loads(response.json()["info"])["infotexts"][0]


def test_gradio_client_gives_the_rest_image(server: str, reference: tuple[np.ndarray, str]) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    result = client.predict(prompt=BASE["prompt"], steps=3, width=64, height=64, seed=11, sampler_name="Euler",
                            cfg_scale=1, sd_model_checkpoint="flux1-dev", api_name="/txt2img")
    assert np.array_equal(_pixels(result["images"][0]), reference[0])
    assert PARTS in result["infotexts"][0]


def test_cli_generate_with_named_parts_gives_the_rest_image(data_dir: Path, tmp_path: Path,
                                                            reference: tuple[np.ndarray, str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fox.png"
    code = cli.main(["generate", "--prompt", BASE["prompt"], "--steps", "3", "--width", "64", "--height", "64",
                     "--seed", "11", "--sampler", "Euler", "--cfg-scale", "1", "--model", "flux1-dev",
                     "--text-encoder", "clip_l", "--text-encoder", "t5xxl_fp16", "--vae", "ae",
                     "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as image:
        assert np.array_equal(np.asarray(image.convert("RGB"), dtype=np.int16), reference[0])
    missing = cli.main(["generate", "--prompt", "x", "--steps", "1", "--text-encoder", "t5xxl_fp8",
                        "--data-dir", str(data_dir), "--out", str(tmp_path / "no.png")])
    error = capsys.readouterr().err
    assert missing == 1 and "t5xxl_fp8" in error and "forge_additional_modules" in error


def test_cli_leaves_sampling_to_flux_defaults_and_runs_its_hires_fix(data_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hires.png"
    code = cli.main(["generate", "--prompt", BASE["prompt"], "--width", "64", "--height", "64", "--seed", "11",
                     "--model", "flux1-dev", "--enable-hr", "--hr-scale", "1.5", "--hr-second-pass-steps", "2",
                     "--hr-distilled-cfg", "2", "--data-dir", str(data_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    infotext = json.loads(capsys.readouterr().out)["infotext"]
    # No --sampler/--cfg-scale/--steps: FLUX.1's Euler at CFG 1 (no real CFG), 20 steps, not SD's DPM++ 2M at 7.
    assert "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1," in infotext
    assert "Hires upscale: 1.5" in infotext and "Hires steps: 2" in infotext
    assert "Hires Distilled CFG Scale: 2" in infotext and "Distilled CFG Scale: 3.5" in infotext
    with Image.open(out) as image:
        assert image.size == (96, 96)


def test_every_layout_generates_through_rest(api: httpx.Client, data_dir: Path,
                                             reference: tuple[np.ndarray, str]) -> None:
    """Last in this file: it adds checkpoints to the server's folder."""
    names = {"comfy": "flux1-dev-aio", "diffusers": "FLUX.1-dev", "gguf": "flux1-dev"}
    for layout, name in names.items():
        install_tiny_flux(data_dir / "models", layout, name=name)
    assert api.post("/refresh-checkpoints").status_code == 200
    listed = {model["model_name"] for model in api.get("/sd-models").json()}
    assert {"flux1-dev", "flux1-dev-aio", "FLUX.1-dev", "flux1-dev-Q8_0"} <= listed
    for name in ("flux1-dev-aio", "FLUX.1-dev", "flux1-dev-Q8_0"):
        image, infotext = _txt2img(api, override_settings={"sd_model_checkpoint": name})
        assert f"Model: {name}," in infotext
        if name == "flux1-dev-Q8_0":  # 8-bit blocks: close to the reference, not equal
            assert 0 < np.abs(image - reference[0]).mean() < 6
        else:  # the same weights stored another way
            assert np.array_equal(image, reference[0]), name
