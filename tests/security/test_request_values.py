"""Request values JSON allows but no field can hold, and values that would make a job blow up,
against the live server: a lone surrogate (``"\\ud800"``) in any text field and NaN/Infinity in
any number field are 422s naming the field, on the A1111 API and the job API; booleans are strict;
an X/Y/Z plot, Prompt matrix or prompt list over the cap is a 422 naming ``script_args`` when it
is submitted; and the server goes on serving valid work."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.hostile_images import encoded
from tests.security.conftest import CONTROLNET, UPSCALER, assert_reveals_nothing

SMALL = {"steps": 1, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler"}
# Raw JSON: Python's json (and so the server) reads the \ud800 escape and the NaN literals.
SURROGATE, NAN = "__SURROGATE__", "__NAN__"


def _raw(body: dict) -> bytes:
    """``body`` as JSON with the placeholders turned into a lone surrogate escape and a NaN literal."""
    return (json.dumps(body).replace(f'"{SURROGATE}"', '"a \\ud800 cat"').replace(f'"{NAN}"', "NaN")
            .replace('"__INF__"', "Infinity").replace('"__-INF__"', "-Infinity").encode())


def _post(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    return client.post(path, content=_raw(body), headers={"content-type": "application/json"})


def _assert_refused(response: httpx.Response, field: str, data_dir: Path) -> None:
    assert response.status_code == 422, response.text[:300]
    detail = response.json()["detail"]
    assert detail.split(":")[0] == field, detail
    assert_reveals_nothing(response, str(data_dir))


TEXT_FIELDS = [
    ({"prompt": SURROGATE}, "prompt"),
    ({"negative_prompt": SURROGATE}, "negative_prompt"),
    ({"styles": [SURROGATE]}, "styles.0"),
    ({"sampler_name": SURROGATE}, "sampler_name"),
    ({"override_settings": {"sd_vae": SURROGATE}}, "override_settings.sd_vae"),
    ({"alwayson_scripts": {"ControlNet": {"args": [{"module": SURROGATE, "model": CONTROLNET}]}}},
     "alwayson_scripts.ControlNet.args.0.module"),
]


@pytest.mark.parametrize(("fields", "field"), TEXT_FIELDS, ids=[f for _, f in TEXT_FIELDS])
def test_a_lone_surrogate_is_a_422_naming_the_field(api: httpx.Client, jobs_api: httpx.Client, data_dir: Path,
                                                    fields: dict, field: str) -> None:
    _assert_refused(_post(api, "/txt2img", {**SMALL, **fields}), field, data_dir)
    _assert_refused(_post(jobs_api, "/jobs", {"type": "txt2img", "payload": {**SMALL, **fields}}),
                    f"payload.{field}", data_dir)


def test_surrogates_are_refused_on_the_other_routes_too(api: httpx.Client, data_dir: Path) -> None:
    _assert_refused(_post(api, "/extra-single-image", {"image": "", "upscaler_1": SURROGATE}), "upscaler_1", data_dir)
    _assert_refused(_post(api, "/options", {"sd_vae": SURROGATE}), "sd_vae", data_dir)
    _assert_refused(_post(api, "/img2img", {**SMALL, "init_images": ["x"], "prompt": SURROGATE}), "prompt", data_dir)


NUMBER_FIELDS = [
    ({"denoising_strength": NAN}, "denoising_strength"),  # ignored by txt2img unless enable_hr: refused anyway
    ({"cfg_scale": "__INF__"}, "cfg_scale"),
    ({"subseed_strength": "__-INF__"}, "subseed_strength"),
    ({"alwayson_scripts": {"ControlNet": {"args": [{"weight": NAN, "model": CONTROLNET}]}}},
     "alwayson_scripts.ControlNet.args.0.weight"),
]


@pytest.mark.parametrize(("fields", "field"), NUMBER_FIELDS, ids=[f for _, f in NUMBER_FIELDS])
def test_nan_and_infinity_are_422s_naming_the_field(api: httpx.Client, jobs_api: httpx.Client, data_dir: Path,
                                                    fields: dict, field: str) -> None:
    _assert_refused(_post(api, "/txt2img", {**SMALL, **fields}), field, data_dir)
    _assert_refused(_post(jobs_api, "/jobs", {"type": "txt2img", "payload": {**SMALL, **fields}}),
                    f"payload.{field}", data_dir)


def test_nan_in_img2img_and_extras_is_refused(api: httpx.Client, data_dir: Path) -> None:
    _assert_refused(_post(api, "/img2img", {**SMALL, "init_images": ["x"], "denoising_strength": NAN}),
                    "denoising_strength", data_dir)
    _assert_refused(_post(api, "/extra-single-image", {"image": "x", "upscaler_1": UPSCALER,
                                                        "upscaling_resize": NAN}), "upscaling_resize", data_dir)


@pytest.mark.parametrize("field", ["save_images", "send_images", "do_not_save_samples", "enable_hr", "tiling"])
def test_booleans_are_strict(api: httpx.Client, jobs_api: httpx.Client, data_dir: Path, field: str) -> None:
    _assert_refused(api.post("/txt2img", json={**SMALL, field: "x"}), field, data_dir)
    response = jobs_api.post("/jobs", json={"type": "txt2img", "payload": {**SMALL, field: "x"}})
    assert response.status_code == 422 and field in response.json()["detail"], response.text[:300]


def test_extras_booleans_are_strict(api: httpx.Client, data_dir: Path) -> None:
    image = base64.b64encode(encoded(Image.new("RGB", (8, 8)))).decode()
    for field in ("upscaling_crop", "show_extras_results"):
        _assert_refused(api.post("/extra-single-image", json={"image": image, field: "x"}), field, data_dir)


XYZ = "X/Y/Z plot"
OVER_THE_CAP = [
    (XYZ, [1, "1-100000", [], 0, "", [], 0, "", []], "makes more than 1000 values"),  # A1111's positional args
    (XYZ, {"x_type": "Seed", "x_values": "1-10", "y_type": "Steps", "y_values": "1-10", "z_type": "CFG Scale",
           "z_values": "1-11"}, "1100 images is more than 1000"),
    ("Prompt matrix", [], "at most 8 parts"),
    ("Prompts from file or textbox", {"prompt_txt": "--prompt a --n_iter 100 --batch_size 8\n" * 2},
     "make 1600 images"),
]


@pytest.mark.parametrize(("script", "args", "message"), OVER_THE_CAP, ids=["xyz range", "xyz cells", "matrix", "file"])
def test_a_script_job_over_the_cap_is_refused_when_submitted(api: httpx.Client, jobs_api: httpx.Client,
                                                             data_dir: Path, script: str, args: object,
                                                             message: str) -> None:
    prompt = "a cat" + "|x" * 9 if script == "Prompt matrix" else "a cat"
    body = {**SMALL, "prompt": prompt, "script_name": script, "script_args": args}
    for response in (api.post("/txt2img", json=body), jobs_api.post("/jobs", json={"type": "txt2img",
                                                                                    "payload": body})):
        _assert_refused(response, "script_args", data_dir)
        assert message in response.json()["detail"]


def test_valid_work_runs_after_the_refusals(api: httpx.Client) -> None:
    response = api.post("/txt2img", json={**SMALL, "prompt": "caf\u00e9 \U0001f600", "script_name": XYZ,
                                          "script_args": {"x_type": "Seed", "x_values": "1-2"}})
    assert response.status_code == 200, response.text[:300]
    grid = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    assert grid.width == 2 * SMALL["width"]  # the plot's grid: two cells side by side
