"""sd-webui-controlnet's API on the live server: its routes, and one unit sent through REST and
through gradio_client giving the same image."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import CONTROLNET

pytestmark = pytest.mark.slow


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _pixels(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def _square() -> Image.Image:
    pixels = np.zeros((96, 64, 3), dtype=np.uint8)
    pixels[24:72, 16:48] = 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def root(server_url: str) -> httpx.Client:
    with httpx.Client(base_url=server_url, timeout=120) as client:
        yield client


def test_listing_routes_answer_as_the_extension_does(root: httpx.Client) -> None:
    assert root.get("/controlnet/version").json() == {"version": 2}
    models = root.get("/controlnet/model_list", params={"update": True}).json()["model_list"]
    assert len(models) == 1 and models[0].startswith(f"{CONTROLNET} [") and len(models[0]) == len(CONTROLNET) + 13
    modules = root.get("/controlnet/module_list").json()
    assert {"none", "canny", "shuffle", "softedge_hed", "openpose"} <= set(modules["module_list"])
    canny = modules["module_detail"]["canny"]
    assert canny["model_free"] is True
    assert [s["name"] for s in canny["sliders"]] == ["Preprocessor Resolution", "Canny Low Threshold",
                                                     "Canny High Threshold"]
    assert modules["module_detail"]["softedge_hed"]["model_free"] is False
    assert root.get("/controlnet/settings").json() == {"control_net_unit_count": 3}


def test_detect_returns_maps_of_the_requested_resolution(root: httpx.Client) -> None:
    answer = root.post("/controlnet/detect", json={"controlnet_module": "canny", "controlnet_processor_res": 128,
                                                   "controlnet_input_images": [_b64(_square())] * 2})
    assert answer.status_code == 200, answer.text
    maps = [_pixels(image) for image in answer.json()["images"]]
    assert len(maps) == 2 and maps[0].shape == (192, 128, 3)  # shorter side 128, the 2:3 image's shape kept
    assert set(np.unique(maps[0])) == {0, 255}


@pytest.mark.parametrize(("body", "field"), [
    ({"controlnet_module": "sobel"}, "controlnet_module"),
    ({"controlnet_module": "canny", "controlnet_input_images": []}, "controlnet_input_images"),
    ({"controlnet_module": "canny", "controlnet_threshold_a": 999}, "controlnet_threshold_a"),
    ({"controlnet_module": "canny", "controlnet_processor_res": 8}, "controlnet_processor_res"),
    ({"controlnet_module": "softedge_hed"}, "ControlNetHED.pth"),
])
def test_detect_refuses_bad_requests_naming_the_field(root: httpx.Client, body: dict, field: str) -> None:
    answer = root.post("/controlnet/detect", json={"controlnet_input_images": [_b64(_square())], **body})
    assert answer.status_code == 422 and field in answer.text


def test_a_unit_gives_the_same_image_through_rest_and_gradio_client(server_url: str, api: httpx.Client) -> None:
    from gradio_client import Client

    common = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}
    unit = {"enabled": True, "module": "canny", "model": CONTROLNET, "weight": 1.5, "image": _b64(_square()),
            "resize_mode": 1, "processor_res": 64}
    scripts = {"ControlNet": {"args": [unit]}}
    rest = api.post("/txt2img", json={**common, "alwayson_scripts": scripts}).json()
    gradio = Client(server_url, verbose=False).predict(**common, alwayson_scripts=scripts, api_name="/txt2img")
    plain = api.post("/txt2img", json=common).json()
    assert len(rest["images"]) == len(gradio["images"]) == 2  # the image, then the unit's canny map
    assert np.array_equal(_pixels(rest["images"][0]), _pixels(gradio["images"][0]))
    assert not np.array_equal(_pixels(rest["images"][0]), _pixels(plain["images"][0]))
    infotext = json.loads(rest["info"])["infotexts"][0]
    assert f'ControlNet 0: "Module: canny, Model: {CONTROLNET} [' in infotext and "Weight: 1.5" in infotext


def test_a_bad_unit_is_a_422_naming_it(api: httpx.Client) -> None:
    answer = api.post("/txt2img", json={"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "alwayson_scripts": {
        "ControlNet": {"args": [{"module": "canny", "model": CONTROLNET}]}}})
    assert answer.status_code == 422 and "ControlNet" in answer.text and "image" in answer.text
