"""A1111 routes clients call at start-up, on the package's live server: /hypernetworks,
/realesrgan-models, /interrogate (no interrogator yet: 501 after validation) and /internal/ping."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SPAN import SPAN

from modules.api.a1111_routes import NOT_INSTALLED, RealEsrganIndex
from modules.models.upscalers import UpscalerLibrary
from tests.upscaler_files import compact_state, write_tiny_upscaler

pytestmark = pytest.mark.slow


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_hypernetworks_is_an_empty_list(api: httpx.Client) -> None:
    response = api.get("/hypernetworks")
    assert response.status_code == 200 and response.json() == []


def test_realesrgan_models_lists_the_installed_realesrgan_networks(api: httpx.Client) -> None:
    models = api.get("/realesrgan-models").json()
    # The tiny upscaler is a RealESRGAN Compact (SRVGGNetCompact) with scale 2.
    assert [m["name"] for m in models] == ["2x-tiny"] and models[0]["scale"] == 2
    upscalers = {u["name"]: u for u in api.get("/upscalers").json()}
    assert models[0]["path"] == upscalers["2x-tiny"]["model_path"]  # the two listings agree
    assert api.get("/realesrgan-models").json() == models  # remembered, and the same the second time


def _save(path: Path, module: torch.nn.Module) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def test_realesrgan_index_keeps_realesrgan_networks_only(tmp_path: Path) -> None:
    esrgan, realesrgan = tmp_path / "ESRGAN", tmp_path / "RealESRGAN"
    write_tiny_upscaler(realesrgan / "compact-4x.safetensors", scale=4)
    _save(esrgan / "rrdb-4x.safetensors", ESRGAN(num_filters=8, num_blocks=1, scale=4))
    _save(esrgan / "span-2x.safetensors", SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2))
    torch.save(compact_state(2), esrgan / "pickled-2x.pth")  # refused without --allow-pickle
    (esrgan / "broken.safetensors").write_bytes(b"not a model")
    index = RealEsrganIndex(UpscalerLibrary([esrgan, realesrgan], allow_pickle=False))
    assert [(m["name"], m["scale"]) for m in index.models()] == [("compact-4x", 4), ("rrdb-4x", 4)]
    index = RealEsrganIndex(UpscalerLibrary([esrgan, realesrgan], allow_pickle=True))
    assert [m["name"] for m in index.models()] == ["compact-4x", "pickled-2x", "rrdb-4x"]
    write_tiny_upscaler(realesrgan / "compact-4x.safetensors", scale=1)  # replaced: read again
    assert index.models()[0] == {"name": "compact-4x", "path": str(realesrgan / "compact-4x.safetensors"),
                                 "scale": 1}


@pytest.mark.parametrize("body", [{"image": "<png>", "model": "clip"}, {"image": "<png>", "model": "deepdanbooru"},
                                  {"image": "<png>"}, {"image": "<png>", "model": "clip", "extra": 1}])
def test_interrogate_says_what_is_missing(api: httpx.Client, body: dict[str, Any]) -> None:
    response = api.post("/interrogate", json={**body, "image": _png()})
    assert response.status_code == 501
    assert NOT_INSTALLED in response.json()["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "image"),
    ({"image": "not an image"}, "image"),
    ({"image": base64.b64encode(b"GIF89a not really").decode()}, "image"),
    ({"image": "<png>", "model": "blip2"}, "model"),
    ({"image": "<png>", "model": 5}, "model"),
    ([], "body"),
    ("clip", "body"),
])
def test_interrogate_bad_bodies_are_422_naming_the_field(api: httpx.Client, body: Any, field: str) -> None:
    if isinstance(body, dict) and body.get("image") == "<png>":
        body = {**body, "image": _png()}
    response = api.post("/interrogate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:")


def test_interrogate_without_a_json_body_is_a_4xx(api: httpx.Client) -> None:
    response = api.post("/interrogate", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_internal_ping_answers_at_the_root(server_url: str) -> None:
    response = httpx.get(server_url + "internal/ping", timeout=30)
    assert response.status_code == 200 and response.json() == {}


@pytest.mark.parametrize("route", ["/server-stop", "/server-restart", "/server-kill"])
def test_server_stop_routes_are_absent(api: httpx.Client, route: str) -> None:
    assert api.post(route).status_code == 404
    assert api.get("/progress").status_code == 200  # and the server is still there


def test_the_routes_are_in_the_openapi_document(server_url: str) -> None:
    paths = httpx.get(server_url + "openapi.json", timeout=30).json()["paths"]
    assert {"/sdapi/v1/hypernetworks", "/sdapi/v1/realesrgan-models", "/internal/ping"} <= set(paths)
    interrogate = paths["/sdapi/v1/interrogate"]["post"]
    assert {"422", "501"} <= set(interrogate["responses"])
