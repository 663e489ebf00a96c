"""Extras: A1111 API fields validated by name, upscalers 1 and 2 applied and blended, the
source infotext carried over with A1111's Postprocess keys, PNGs saved in the dated folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from modules.models.upscalers import UpscalerLibrary
from modules.processing.errors import RequestValidationError
from modules.processing.extras.extras import (
    EXTRAS_API_FIELDS,
    MAX_UPSCALED_PIXELS,
    ExtrasRequest,
    check_extras_sizes,
    extras_infotext,
    extras_parameters,
    extras_request_from_api,
    run_extras,
)
from modules.processing.extras.extras_job import images_in_folder
from modules.processing.extras.upscaling import blend_upscalers
from modules.processing.generation.txt2img import OutputOptions
from modules.processing.output.infotext import parse_infotext
from tests.hostile_images import one_colour_png
from tests.upscaler_files import random_image, write_tiny_upscaler

SOURCE_INFOTEXT = "a red fox, snow\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 32x24"


@pytest.fixture
def library(tmp_path: Path) -> UpscalerLibrary:
    write_tiny_upscaler(tmp_path / "models" / "ESRGAN" / "tiny_x2.safetensors", 2)
    write_tiny_upscaler(tmp_path / "models" / "RealESRGAN" / "tiny_x4.safetensors", 4, seed=1)
    return UpscalerLibrary([tmp_path / "models" / "ESRGAN", tmp_path / "models" / "RealESRGAN"], allow_pickle=False)


@pytest.fixture
def output(tmp_path: Path) -> OutputOptions:
    return OutputOptions(folder=tmp_path / "outputs" / "extras-images")


def png_with_parameters(image: Image.Image, text: str, folder: Path) -> Image.Image:
    """``image`` read back from a PNG holding ``text`` as its "parameters", as an upload arrives."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    path = folder / "source.png"
    image.save(path, pnginfo=info)
    return Image.open(path)


def test_scale_by_keeps_the_source_infotext_and_appends_the_postprocess_keys(
        tmp_path: Path, library: UpscalerLibrary, output: OutputOptions) -> None:
    source = png_with_parameters(random_image(32, 24), SOURCE_INFOTEXT, tmp_path)
    request = ExtrasRequest(upscaling_resize=2, upscaler_1="tiny_x2")
    [result] = run_extras([("fox.png", source)], request, library, output)
    assert result.image.size == (64, 48)
    assert result.infotext == (f"{SOURCE_INFOTEXT}, Postprocess upscale by: 2, Postprocess upscaler: tiny_x2")
    parsed = parse_infotext(result.infotext)
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Steps"]) == ("a red fox, snow", "blurry", "20")
    assert parsed["Postprocess upscale by"] == "2" and parsed["Postprocess upscaler"] == "tiny_x2"
    # Saved in the dated folder, with the infotext in the PNG.
    assert result.path is not None
    assert result.path.parent == tmp_path / "outputs" / "extras-images" / dt.date.today().isoformat()
    assert result.path.name == "00000-fox.png"
    with Image.open(result.path) as saved:
        assert saved.size == (64, 48)
        assert saved.info["parameters"] == result.infotext
        assert np.array_equal(np.asarray(saved), np.asarray(result.image))


@pytest.mark.parametrize(("crop", "keys"), [
    (True, "Postprocess upscale to: 100x64, Postprocess crop to fit: True, Postprocess upscaler: tiny_x4"),
    (False, "Postprocess upscale to: 100x64, Postprocess upscaler: tiny_x4"),
])
def test_scale_to_makes_the_exact_size_and_says_so(library: UpscalerLibrary, crop: bool, keys: str) -> None:
    request = ExtrasRequest(resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=64, upscaling_crop=crop,
                            upscaler_1="tiny_x4")
    [result] = run_extras([("a", random_image(32, 32))], request, library, None)
    assert result.image.size == (100, 64)
    assert result.infotext == keys  # no source infotext: just the Postprocess line
    assert result.path is None


def test_upscaler_2_is_blended_by_its_visibility(library: UpscalerLibrary) -> None:
    image = random_image(24, 16)
    first = run_extras([("a", image)], ExtrasRequest(upscaler_1="tiny_x2"), library)[0].image
    second = run_extras([("a", image)], ExtrasRequest(upscaler_1="Nearest"), library)[0].image
    request = ExtrasRequest(upscaler_1="tiny_x2", upscaler_2="Nearest", extras_upscaler_2_visibility=0.25)
    [result] = run_extras([("a", image)], request, library)
    assert np.array_equal(np.asarray(result.image), np.asarray(blend_upscalers(first, second, 0.25)))
    assert not np.array_equal(np.asarray(result.image), np.asarray(first))
    assert parse_infotext(SOURCE_INFOTEXT + ", " + result.infotext)["Postprocess upscaler 2"] == "Nearest"
    assert result.infotext.endswith("Postprocess upscaler 2: Nearest, Postprocess upscaler 2 visibility: 0.25")


def test_upscaler_1_none_does_nothing_like_a1111(tmp_path: Path, library: UpscalerLibrary) -> None:
    source = png_with_parameters(random_image(20, 20), SOURCE_INFOTEXT, tmp_path)
    request = ExtrasRequest(upscaler_1="None", upscaler_2="tiny_x2", extras_upscaler_2_visibility=1.0)
    [result] = run_extras([("same", source)], request, library)
    assert result.image.size == (20, 20)
    assert result.infotext == SOURCE_INFOTEXT
    assert extras_parameters(request) == {}


def test_a_batch_keeps_its_order_and_names(library: UpscalerLibrary, output: OutputOptions) -> None:
    images = [(f"img{i}.png", random_image(16 + 4 * i, 16, seed=i)) for i in range(3)]
    results = run_extras(images, ExtrasRequest(upscaler_1="Lanczos", upscaling_resize=3), library, output)
    assert [r.name for r in results] == ["img0.png", "img1.png", "img2.png"]
    assert [r.image.size for r in results] == [(48, 48), (60, 48), (72, 48)]
    assert [r.path.name for r in results if r.path] == ["00000-img0.png", "00001-img1.png", "00002-img2.png"]


def test_saving_follows_the_output_options(tmp_path: Path, library: UpscalerLibrary) -> None:
    folder = tmp_path / "out" / "extras-images"
    plain = OutputOptions(folder=folder, date_subfolder=False, embed_infotext=False)
    [result] = run_extras([("../../escape me", random_image(16, 16))], ExtrasRequest(upscaler_1="Nearest"), library,
                          plain)
    assert result.path == folder / "00000-escape_me.png"
    with Image.open(result.path) as saved:
        assert "parameters" not in saved.info
    unsaved = OutputOptions(folder=folder, save=False)
    assert run_extras([("x", random_image(16, 16))], ExtrasRequest(), library, unsaved)[0].path is None


def test_an_unknown_upscaler_fails_before_anything_is_saved(library: UpscalerLibrary, output: OutputOptions) -> None:
    with pytest.raises(RequestValidationError) as caught:
        run_extras([("x", random_image(16, 16))], ExtrasRequest(upscaler_1="tiny_x2", upscaler_2="gone",
                                                                extras_upscaler_2_visibility=0.5), library, output)
    assert caught.value.field == "upscaler_2"
    assert not output.folder.exists()


def test_infotext_without_a_parameter_line_gets_its_own_line() -> None:
    params = {"Postprocess upscale by": 1.5, "Postprocess upscaler": "R-ESRGAN 4x+"}
    assert extras_infotext("just a prompt", params) == \
        "just a prompt\nPostprocess upscale by: 1.5, Postprocess upscaler: R-ESRGAN 4x+"
    assert extras_infotext(None, {}) == ""


def test_api_payload_with_defaults_nulls_and_image_fields() -> None:
    payload = {"image": "data:image/png;base64,AAAA", "show_extras_results": True, "resize_mode": 1.0,
               "upscaling_resize_w": 1024.0, "upscaling_resize_h": 768, "upscaling_crop": False,
               "upscaler_1": "tiny_x2", "upscaler_2": None, "gfpgan_visibility": 0, "codeformer_visibility": 0.0,
               "codeformer_weight": 0.5, "upscale_first": True}
    request = extras_request_from_api(payload, ["None", "Lanczos", "Nearest", "tiny_x2"])
    assert request == ExtrasRequest(resize_mode=1, upscaling_resize_w=1024, upscaling_resize_h=768,
                                    upscaling_crop=False, upscaler_1="tiny_x2", upscale_first=True,
                                    codeformer_weight=0.5)
    assert extras_request_from_api({}, []) == ExtrasRequest()


@pytest.mark.parametrize(("payload", "field"), [
    ({"resize_mode": 2}, "resize_mode"),
    ({"resize_mode": "scale"}, "resize_mode"),
    ({"upscaling_resize": 9}, "upscaling_resize"),
    ({"upscaling_resize": 0.5}, "upscaling_resize"),
    ({"upscaling_resize": "2"}, "upscaling_resize"),
    ({"upscaling_resize": float("nan")}, "upscaling_resize"),
    ({"upscaling_resize_w": 32}, "upscaling_resize_w"),
    ({"upscaling_resize_h": 9000}, "upscaling_resize_h"),
    ({"upscaling_resize_w": 512.5}, "upscaling_resize_w"),
    ({"upscaling_crop": "yes"}, "upscaling_crop"),
    ({"upscale_first": 1}, "upscale_first"),
    ({"upscaler_1": "4x-UltraSharp"}, "upscaler_1"),
    ({"upscaler_2": 5}, "upscaler_2"),
    ({"extras_upscaler_2_visibility": 1.5}, "extras_upscaler_2_visibility"),
    ({"gfpgan_visibility": 1.5}, "gfpgan_visibility"),
    ({"codeformer_visibility": "1"}, "codeformer_visibility"),
    ({"codeformer_weight": 2}, "codeformer_weight"),
])
def test_bad_api_fields_are_named(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        extras_request_from_api(payload, ["None", "Lanczos", "Nearest", "tiny_x2"])
    assert caught.value.field == field


def test_face_restoration_is_a_notice_that_it_is_not_installed() -> None:
    request = extras_request_from_api({"gfpgan_visibility": 1.0, "codeformer_visibility": 0}, ["None"])
    assert len(request.notices()) == 1 and "face restoration" in request.notices()[0]
    assert "not installed" in request.notices()[0] and request.notices()[0].startswith("gfpgan_visibility")


def test_unknown_fields_are_ignored() -> None:
    # ``model`` and ``upscaling_scale`` come from other A1111/Forge versions' clients.
    request = extras_request_from_api({"upscaling_scale": 2, "model": "x", "upscaling_resize": 3}, ["None"])
    assert request.upscaling_resize == 3
    assert "upscaling_scale" not in EXTRAS_API_FIELDS and "upscaling_resize" in EXTRAS_API_FIELDS


def test_payload_must_be_an_object() -> None:
    with pytest.raises(RequestValidationError) as caught:
        extras_request_from_api(["upscaler_1"], ["None"])  # type: ignore[arg-type]
    assert caught.value.field == "payload"


@pytest.mark.parametrize(("fields", "size", "field"), [
    ({"upscaling_resize": 4.0}, (4096, 4096), "upscaling_resize"),  # 16384x16384
    ({"resize_mode": 1, "upscaling_resize_w": 8192, "upscaling_resize_h": 8192}, (64, 4000), "upscaling_resize_w"),
])
def test_an_upscale_over_the_output_limit_is_refused_before_it_runs(library: UpscalerLibrary, fields: dict,
                                                                   size: tuple[int, int], field: str) -> None:
    request = ExtrasRequest(upscaler_1="tiny_x2", **fields)
    # Only the size is read: a lazy stand-in of that size would do; a real image of it is small enough.
    image = Image.new("L", size)
    with pytest.raises(RequestValidationError) as caught:
        run_extras([("big", image)], request, library)
    assert caught.value.field == field and f"{MAX_UPSCALED_PIXELS:,}" in caught.value.message


def test_sizes_within_the_limits_pass_and_upscaler_none_upscales_nothing() -> None:
    check_extras_sizes([("a", Image.new("L", (4096, 4096)))], ExtrasRequest(upscaler_1="Lanczos"))  # 8192x8192
    check_extras_sizes([("a", Image.new("L", (4096, 4096)))], ExtrasRequest(upscaler_1="None", upscaling_resize=8))
    with pytest.raises(RequestValidationError) as caught:
        check_extras_sizes([("a", Image.new("L", (8, 8))), ("b", Image.new("L", (4097, 4096)))], ExtrasRequest())
    assert caught.value.field == "image.1"


def test_a_folder_skips_files_over_the_pixel_limit_and_says_why_when_none_is_left(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(one_colour_png(5000, 5000))
    with pytest.raises(RequestValidationError, match="big.png is 5000x5000") as caught:
        images_in_folder(tmp_path)
    assert caught.value.field == "input_dir"
    Image.new("RGB", (4, 4)).save(tmp_path / "small.png")
    assert [name for name, _ in images_in_folder(tmp_path)] == ["small.png"]
