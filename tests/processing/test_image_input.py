"""Base64 images in and out: checked before decoding, infotext kept."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.image_input import decode_base64_image, png_base64


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
