"""sd-webui-controlnet's API on the live server: its routes, one unit sent through REST and
through gradio_client giving the same image, and every unit that does not run as sent said so."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import CONTROLNET
from tests.tiny_controlnet import write_tiny_controlnet
from tests.tiny_models import build_tiny_pipeline

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


SDXL_CONTROLNET = "tiny-sdxl-canny"
COMMON = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def sdxl_controlnet(root: httpx.Client, data_dir: Path) -> Iterator[str]:
    """An SDXL ControlNet in the server's models/ControlNet (whose only checkpoint is SD1.x) while
    the test runs, found by the rescan clients ask for."""
    folder = write_tiny_controlnet(data_dir / "models" / "ControlNet" / SDXL_CONTROLNET,
                                   build_tiny_pipeline("sdxl").unet)
    assert root.get("/controlnet/model_list", params={"update": True}).status_code == 200
    yield SDXL_CONTROLNET
    shutil.rmtree(folder)
    root.get("/controlnet/model_list", params={"update": True})


def _txt2img(api: httpx.Client, *units: dict, **payload: object) -> dict:
    scripts = {"ControlNet": {"args": list(units)}}
    answer = api.post("/txt2img", json={**COMMON, **payload, "alwayson_scripts": scripts})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _unit(**fields: object) -> dict:
    return {"enabled": True, "module": "canny", "model": CONTROLNET, "image": _b64(_square()), "processor_res": 64,
            **fields}


def test_listing_routes_answer_as_the_extension_does(root: httpx.Client) -> None:
    assert root.get("/controlnet/version").json() == {"version": 2}
    models = root.get("/controlnet/model_list", params={"update": True}).json()["model_list"]
    ours = [model for model in models if model.startswith(f"{CONTROLNET} [")]
    assert len(ours) == 1 and len(ours[0]) == len(CONTROLNET) + 13
    modules = root.get("/controlnet/module_list").json()
    # sd-webui-controlnet's internal names ("hed", "depth"), the details keyed the same way.
    assert {"none", "canny", "shuffle", "hed", "depth", "lineart", "invert", "color", "openpose"} <= set(
        modules["module_list"])
    assert "softedge_hed" not in modules["module_list"]
    assert set(modules["module_detail"]) == set(modules["module_list"])
    canny = modules["module_detail"]["canny"]
    assert canny["model_free"] is True
    assert [s["name"] for s in canny["sliders"]] == ["Preprocessor Resolution", "Canny Low Threshold",
                                                     "Canny High Threshold"]
    assert modules["module_detail"]["hed"]["model_free"] is False
    assert root.get("/controlnet/settings").json() == {"control_net_unit_count": 3}


def test_module_list_with_alias_names_gives_the_names_the_ui_shows(root: httpx.Client) -> None:
    plain = root.get("/controlnet/module_list").json()
    aliases = root.get("/controlnet/module_list", params={"alias_names": True}).json()
    assert {"none", "canny", "softedge_hed", "depth_midas", "lineart_realistic", "t2ia_color_grid",
            "invert (from white bg & black line)"} <= set(aliases["module_list"])
    assert not {"hed", "depth", "lineart", "color", "invert"} & set(aliases["module_list"])
    assert len(aliases["module_list"]) == len(plain["module_list"])
    assert set(aliases["module_detail"]) == set(aliases["module_list"])
    assert aliases["module_detail"]["softedge_hed"] == plain["module_detail"]["hed"]
    assert root.get("/controlnet/module_list", params={"alias_names": False}).json() == plain


def test_control_types_lists_each_type_with_its_preprocessors_and_models(root: httpx.Client,
                                                                        sdxl_controlnet: str) -> None:
    types = root.get("/controlnet/control_types").json()["control_types"]
    assert {"All", "Canny", "Depth", "Inpaint", "IP-Adapter", "Lineart", "MLSD", "NormalMap", "OpenPose", "Scribble",
            "SoftEdge", "Shuffle", "Tile", "T2I-Adapter", "Segmentation", "Reference", "Recolor", "Revision",
            "Instant-ID", "InstructP2P", "SparseCtrl"} <= set(types)
    every = types["All"]
    aliases = root.get("/controlnet/module_list", params={"alias_names": True}).json()["module_list"]
    assert every["module_list"] == aliases and (every["default_option"], every["default_model"]) == ("none", "None")
    models = root.get("/controlnet/model_list").json()["model_list"]
    assert every["model_list"] == ["None", *models]
    canny = types["Canny"]
    assert canny["module_list"] == ["none", "canny"] and canny["default_option"] == "canny"
    (xl_title,) = [model for model in models if model.startswith(f"{sdxl_controlnet} [")]
    assert canny["model_list"] == ["None", xl_title] and canny["default_model"] == xl_title
    assert types["SoftEdge"]["module_list"][:2] == ["none", "softedge_hed"] and types["SoftEdge"]["model_list"] == [
        "None"]
    assert types["Inpaint"] == {"module_list": ["none"], "model_list": ["None"], "default_option": "none",
                                "default_model": "None"}


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


def test_a_malformed_unit_is_a_422_naming_it(api: httpx.Client) -> None:
    answer = api.post("/txt2img", json={**COMMON, "alwayson_scripts": {"ControlNet": {"args": [
        _unit(weight="strong")]}}})
    assert answer.status_code == 422 and "alwayson_scripts.ControlNet" in answer.text and "weight" in answer.text


def test_a_controlnet_of_another_family_is_a_422_naming_the_field(api: httpx.Client, sdxl_controlnet: str) -> None:
    answer = api.post("/txt2img", json={**COMMON, "alwayson_scripts": {"ControlNet": {"args": [
        _unit(model=f"{sdxl_controlnet} [0123456789]")]}}})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("alwayson_scripts.ControlNet.args[0].model: ")
    assert "is made for SDXL, but the checkpoint 'tiny-sd15' is SD1.x" in detail
    assert "/" not in detail.split(": ", 1)[1]  # no server path


def test_an_out_of_range_threshold_is_clamped_and_said(api: httpx.Client) -> None:
    clamped = _txt2img(api, _unit(threshold_a=999, save_detected_map=False))
    info = json.loads(clamped["info"])
    assert info["notices"] == ["ControlNet unit 0: threshold_a 999 is outside 1..255 (Canny Low Threshold of canny); "
                               "the default 100 was used"]
    plain = api.post("/txt2img", json=COMMON).json()
    default = _txt2img(api, _unit(threshold_a=100, save_detected_map=False))
    assert len(clamped["images"]) == 1
    assert not np.array_equal(_pixels(clamped["images"][0]), _pixels(plain["images"][0]))  # the unit ran
    assert np.array_equal(_pixels(clamped["images"][0]), _pixels(default["images"][0]))  # with threshold_a 100
    assert "Threshold A: 100," in info["infotexts"][0]


def test_a_unit_with_a_missing_model_is_a_notice_and_not_in_the_infotext(api: httpx.Client) -> None:
    answer = _txt2img(api, _unit(model="control_v11p_sd15_canny [d14c016b]"),
                      _unit(model="None", image=None))
    info = json.loads(answer["info"])
    assert info["notices"][0].startswith("ControlNet unit 0 not applied: no ControlNet model "
                                         "'control_v11p_sd15_canny' in models/ControlNet; available: ")
    assert info["notices"][1].startswith("ControlNet unit 1 not applied: ")
    assert "ControlNet 0" not in info["infotexts"][0] and "ControlNet 1" not in info["infotexts"][0]
    assert len(answer["images"]) == 1  # nothing ran: no detected map either
    plain = api.post("/txt2img", json=COMMON).json()
    assert np.array_equal(_pixels(answer["images"][0]), _pixels(plain["images"][0]))


def test_save_detected_map_decides_each_units_map(api: httpx.Client) -> None:
    assert len(_txt2img(api, _unit(save_detected_map=False))["images"]) == 1
    answer = _txt2img(api, _unit(save_detected_map=False), _unit(save_detected_map=True, processor_res=128))
    assert len(answer["images"]) == 2 and _pixels(answer["images"][1]).shape == (192, 128, 3)  # unit 1's map
    assert len(_txt2img(api, _unit())["images"]) == 2  # on unless false, as in sd-webui-controlnet
