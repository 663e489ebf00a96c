"""Base64 images in and out: checked before decoding, infotext kept."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import (
    MAX_INPUT_PIXELS,
    MAX_REQUEST_PIXELS,
    PixelBudget,
    check_input_pixels,
    decode_base64_image,
    open_image_file,
    png_base64,
)
from tests.hostile_images import b64, cmyk_jpeg, encoded, one_colour_png, truncated_png


def _b64(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def test_round_trip_keeps_infotext_and_accepts_data_uris() -> None:
    encoded = png_base64(Image.new("RGB", (4, 4), "red"), "a cat\nSteps: 1")
    assert decode_base64_image(encoded).info["parameters"] == "a cat\nSteps: 1"
    assert decode_base64_image("data:image/png;base64," + encoded).size == (4, 4)


@pytest.mark.parametrize("data", [None, "", "!!!", base64.b64encode(b"plain text").decode()])
def test_non_images_are_refused_naming_the_field(data: object) -> None:
    with pytest.raises(RequestValidationError) as caught:
        decode_base64_image(data, field="init_images")
    assert caught.value.field == "init_images"


def test_only_png_jpeg_webp_are_accepted() -> None:
    assert decode_base64_image(_b64(Image.new("RGB", (4, 4)), "JPEG")).format == "JPEG"
    with pytest.raises(RequestValidationError, match="BMP"):
        decode_base64_image(_b64(Image.new("RGB", (4, 4)), "BMP"))


def test_an_image_over_the_pixel_limit_is_refused_from_its_header() -> None:
    huge = b64(one_colour_png(12000, 12000))  # 430 MB if it were decoded
    with pytest.raises(RequestValidationError) as caught:
        decode_base64_image(huge, field="init_images")
    assert caught.value.field == "init_images" and "12000x12000" in caught.value.message
    side = int(MAX_INPUT_PIXELS ** 0.5)
    assert decode_base64_image(b64(one_colour_png(side, 8))).size == (side, 8)  # the limit is pixels, not a side
    with pytest.raises(RequestValidationError, match="pixels"):
        check_input_pixels((side + 1, side), "image")


def test_a_truncated_image_is_refused_naming_the_field() -> None:
    with pytest.raises(RequestValidationError) as caught:
        decode_base64_image(b64(truncated_png()), field="mask")
    assert caught.value.field == "mask" and "truncated" in caught.value.message


def test_odd_modes_arrive_in_a_mode_the_engine_converts_faithfully() -> None:
    cmyk = decode_base64_image(b64(cmyk_jpeg()))
    assert cmyk.mode == "RGB" and cmyk.format == "JPEG" and cmyk.getpixel((0, 0)) == (255, 0, 0)
    deep = decode_base64_image(b64(encoded(Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)))))
    assert deep.mode == "L" and deep.getpixel((0, 0)) == round(40000 / 257)  # scaled, not clipped to white
    for mode in ("P", "LA", "RGBA", "L"):
        assert decode_base64_image(b64(encoded(Image.new(mode, (4, 4))))).mode == mode


def test_an_uploaded_file_is_checked_the_same_way_and_its_path_is_never_shown(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(one_colour_png(5000, 5000))
    (tmp_path / "cut.png").write_bytes(truncated_png())
    for name in ("big.png", "cut.png", "missing.png"):
        with pytest.raises(RequestValidationError) as caught:
            open_image_file(tmp_path / name, "image")
        assert str(tmp_path) not in str(caught.value) and caught.value.field == "image"
    (tmp_path / "ok.png").write_bytes(encoded(Image.new("RGB", (6, 5), "red")))
    opened = open_image_file(tmp_path / "ok.png")
    assert opened.size == (6, 5) and opened.getpixel((0, 0)) == (255, 0, 0)


def test_a_request_budget_refuses_the_image_that_goes_over() -> None:
    budget = PixelBudget()
    big = Image.new("L", (4096, 4096))
    for k in range(MAX_REQUEST_PIXELS // MAX_INPUT_PIXELS):
        budget.take(big, f"imageList.{k}.data")
    with pytest.raises(RequestValidationError) as caught:
        budget.take(Image.new("L", (1, 1)), "imageList.4.data")
    assert caught.value.field == "imageList.4.data" and f"{MAX_REQUEST_PIXELS:,}" in caught.value.message
