"""A1111's positional ``script_args`` on the live server, sent as an A1111 1.10 client sends
them: the same images as our named form, and a 422 naming the position when one is wrong."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

BASE = {"prompt": "a cat", "negative_prompt": "", "steps": 1, "width": 64, "height": 64, "seed": 11,
        "sampler_name": "Euler", "cfg_scale": 7}
#: A1111 1.10's X/Y/Z list: X = Seed (index 1) "11, 12", no Y/Z, legend on, with the cells.
XYZ = [1, "11, 12", [], 0, "", [], 0, "", [], True, True, False, False, False, False, False, 0, False]


def _images(response: httpx.Response) -> list[Image.Image]:
    assert response.status_code == 200, response.text
    return [Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB") for data in response.json()["images"]]


def _init_image() -> str:
    gradient = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _same_pixels(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return [(i.size, i.tobytes()) for i in a] == [(i.size, i.tobytes()) for i in b]


def test_xyz_seed_axis_as_a1111_sends_it(api: httpx.Client) -> None:
    positional = api.post("/txt2img", json={**BASE, "script_name": "X/Y/Z plot", "script_args": XYZ})
    images = _images(positional)
    assert len(images) == 1 + 2 and [image.size for image in images[1:]] == [(64, 64), (64, 64)]
    assert images[0].width >= 2 * 64 and images[0].height > 64  # the grid, with its legend above
    infotexts = json.loads(positional.json()["info"])["infotexts"]
    assert ["Seed: 11" in infotexts[1], "Seed: 12" in infotexts[2]] == [True, True]
    named = api.post("/txt2img", json={**BASE, "script_name": "X/Y/Z plot", "script_args": {
        "x_type": "Seed", "x_values": "11, 12", "include_lone_images": True}})
    assert _same_pixels(images, _images(named))
    by_name = api.post("/txt2img", json={**BASE, "script_name": "X/Y/Z plot", "script_args": ["Seed", *XYZ[1:]]})
    assert _same_pixels(images, _images(by_name))


@pytest.mark.parametrize(("args", "message"), [
    ([99, *XYZ[1:]], "script_args[0]: 99 is not an axis index"),
    ([1, "11", [], 28, *XYZ[4:]], "script_args[3]: X/Y/Z axis 'Hires upscaler' (index 28 on txt2img) is not "
                                  "supported here; supported: Nothing, Seed,"),
    ([*XYZ, False], "expected at most 18 arguments"),
])
def test_xyz_bad_positions_are_422_naming_them(api: httpx.Client, args: list[Any], message: str) -> None:
    response = api.post("/txt2img", json={**BASE, "script_name": "X/Y/Z plot", "script_args": args})
    assert response.status_code == 422, response.text
    assert "script_args" in response.text and message in response.json()["detail"]


def test_sd_upscale_with_a_model_by_a1111_index(api: httpx.Client) -> None:
    assert [u["name"] for u in api.get("/upscalers").json()].index("2x-tiny") == 3
    body = {**BASE, "steps": 2, "init_images": [_init_image()], "denoising_strength": 0.3,
            "script_name": "SD upscale"}
    positional = _images(api.post("/img2img", json={**body, "script_args": ["", 16, 3, 2.0]}))
    assert [image.size for image in positional] == [(128, 128)]
    named = _images(api.post("/img2img", json={**body, "script_args": {
        "overlap": 16, "upscaler": "2x-tiny", "scale_factor": 2.0}}))
    assert _same_pixels(positional, named)
    lanczos = _images(api.post("/img2img", json={**body, "script_args": ["", 16, 1, 2.0]}))
    assert lanczos[0].size == (128, 128) and not _same_pixels(positional, lanczos)  # the model did the first pass
    refused = api.post("/img2img", json={**body, "script_args": ["", 16, 9, 2.0]})
    assert refused.status_code == 422, refused.text
    assert "script_args[2] (upscaler_index): 9 is not an upscaler here" in refused.json()["detail"]
