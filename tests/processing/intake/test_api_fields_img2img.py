"""A1111 img2img payloads: API defaults, integer choices, and bad input named by field."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields import unknown_fields
from modules.processing.intake.api_fields_img2img import IMG2IMG_API_FIELDS, img2img_request_from_api


def _b64(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


IMAGE = _b64(Image.new("RGB", (64, 64), "red"))
MASK = _b64(Image.new("L", (64, 64), 255))


def test_a1111_api_defaults_apply() -> None:
    request = img2img_request_from_api({"init_images": [IMAGE], "mask": MASK, "width": 64, "height": 64})
    assert request.init_images[0].size == (64, 64) and request.mask is not None
    assert (request.masked_content, request.inpaint_only_masked, request.only_masked_padding) == ("fill", True, 0)
    assert (request.strength, request.mask_blur_x, request.resize_mode) == (0.75, 4, "Just resize")


def test_integer_choices_and_flags_translate() -> None:
    request = img2img_request_from_api({
        "init_images": [IMAGE], "mask": MASK, "resize_mode": 2, "inpainting_fill": 1, "inpaint_full_res": 0,
        "inpainting_mask_invert": 1, "mask_blur": 9, "denoising_strength": 0.3, "inpaint_full_res_padding": 16,
        "image_cfg_scale": 1.5, "include_init_images": False, "sampler_index": "Euler", "steps": 5,
    })
    assert request.resize_mode == "Resize and fill" and request.masked_content == "original"
    assert not request.inpaint_only_masked and request.inpaint_not_masked
    assert (request.mask_blur_x, request.mask_blur_y, request.strength, request.only_masked_padding) == (9, 9, 0.3, 16)


def test_img2img_carries_forges_distilled_cfg_scale() -> None:
    assert img2img_request_from_api({"init_images": [IMAGE], "distilled_cfg_scale": 4.0}).distilled_cfg_scale == 4.0
    assert img2img_request_from_api({"init_images": [IMAGE], "distilled_cfg_scale": None}).distilled_cfg_scale is None
    assert unknown_fields({"distilled_cfg_scale": 4.0}, IMG2IMG_API_FIELDS, "img2img") == []


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "init_images"),
    ({"init_images": []}, "init_images"),
    ({"init_images": ["not base64!"]}, "init_images"),
    ({"init_images": [_b64(Image.new("RGB", (8, 8)), "GIF")]}, "init_images"),
    ({"init_images": [IMAGE], "mask": "nope"}, "mask"),
    ({"init_images": [IMAGE], "denoising_strength": 1.5}, "denoising_strength"),
    ({"init_images": [IMAGE], "resize_mode": 7}, "resize_mode"),
    ({"init_images": [IMAGE], "inpainting_fill": "paint"}, "inpainting_fill"),
    ({"init_images": [IMAGE], "inpaint_full_res": "yes"}, "inpaint_full_res"),
    ({"init_images": [IMAGE], "mask_blur_x": 100}, "mask_blur_x"),
    ({"init_images": [IMAGE], "initial_noise_multiplier": 2.0}, "initial_noise_multiplier"),
    ({"init_images": [IMAGE], "distilled_cfg_scale": 31}, "distilled_cfg_scale"),
    ({"init_images": [IMAGE], "distilled_cfg_scale": "3.5"}, "distilled_cfg_scale"),
])
def test_bad_fields_are_named(payload: dict, field: str) -> None:
    with pytest.raises(RequestValidationError) as error:
        img2img_request_from_api(payload)
    assert error.value.field == field


def test_unknown_and_txt2img_only_fields_are_ignored_and_listed() -> None:
    # A1111's reader ignores fields it does not know; clients of other versions send them.
    payload = {"init_images": [IMAGE], "denoise": 0.5, "enable_hr": True, "hr_scale": 2, "seed_enable_extras": True,
               "include_init_images": True, "initial_noise_multiplier": 0.5}
    request = img2img_request_from_api(payload)
    assert request.hires is None and request.initial_noise_multiplier == 0.5
    warnings = unknown_fields(payload, IMG2IMG_API_FIELDS, "img2img")
    assert [w.split(":")[0] for w in warnings] == ["denoise", "enable_hr", "hr_scale", "seed_enable_extras"]


def test_oversized_image_is_refused_before_its_pixels_decode() -> None:
    huge = Image.new("L", (5000, 4000))
    buffer = io.BytesIO()
    huge.save(buffer, format="PNG")  # compresses to a few kB: only the header says how big it is
    with pytest.raises(RequestValidationError, match="5000x4000"):
        img2img_request_from_api({"init_images": [base64.b64encode(buffer.getvalue()).decode()]})
