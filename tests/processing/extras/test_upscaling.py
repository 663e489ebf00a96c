"""Extras sizing: "Scale by", "Scale to" with and without crop, the two-upscaler blend, and the
Hires. fix adapter over the upscaler library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.models.upscalers import ResizeUpscaler, UpscalerLibrary
from modules.processing.errors import RequestValidationError
from modules.processing.extras.upscaling import (
    blend_upscalers,
    cover_scale,
    library_image_upscale,
    upscale_by,
    upscale_to,
)
from tests.upscaler_files import random_image, write_tiny_upscaler


@pytest.fixture
def library(tmp_path: Path) -> UpscalerLibrary:
    write_tiny_upscaler(tmp_path / "ESRGAN" / "tiny_x2.safetensors", 2)
    return UpscalerLibrary([tmp_path / "ESRGAN"], allow_pickle=False)


SIZES = [(32, 32, 64, 64), (48, 32, 64, 64), (32, 48, 100, 70), (40, 30, 64, 200), (64, 64, 64, 64)]


@pytest.mark.parametrize(("width", "height", "target_w", "target_h"), SIZES)
@pytest.mark.parametrize("crop", [True, False])
@pytest.mark.parametrize("name", ["Lanczos", "tiny_x2"])
def test_scale_to_gives_the_exact_size(library: UpscalerLibrary, name: str, crop: bool, width: int, height: int,
                                       target_w: int, target_h: int) -> None:
    result = upscale_to(library.get(name), random_image(width, height), target_w, target_h, crop)
    assert result.size == (target_w, target_h)


def test_crop_to_fit_cuts_the_centre_and_stretch_keeps_everything() -> None:
    # Three vertical bands: red | green | blue, each 16 px wide; the target is square.
    bands = np.zeros((16, 48, 3), dtype=np.uint8)
    bands[:, :16, 0] = bands[:, 16:32, 1] = bands[:, 32:, 2] = 255
    image = Image.fromarray(bands)
    cropped = np.asarray(upscale_to(ResizeUpscaler("Nearest"), image, 32, 32, crop=True))
    assert cropped.shape == (32, 32, 3)
    assert np.all(cropped[:, :, 1] == 255) and np.all(cropped[:, :, [0, 2]] == 0)  # only the green centre
    stretched = np.asarray(upscale_to(ResizeUpscaler("Nearest"), image, 32, 32, crop=False))
    assert stretched[16, 0, 0] == 255 and stretched[16, 31, 2] == 255  # red and blue edges kept


def test_cover_scale() -> None:
    assert cover_scale((48, 32), 64, 64) == 2.0
    assert cover_scale((100, 50), 50, 50) == 1.0


def test_scale_by_rounds_to_the_nearest_pixel(library: UpscalerLibrary) -> None:
    assert upscale_by(library.get("tiny_x2"), random_image(33, 21), 2.5).size == (82, 52)
    assert upscale_by(library.get("Nearest"), random_image(33, 21), 3).size == (99, 63)


def test_blend_upscalers_follows_visibility() -> None:
    black = Image.new("RGB", (8, 8), (0, 0, 0))
    white = Image.new("RGB", (8, 8), (200, 100, 50))
    assert np.array_equal(np.asarray(blend_upscalers(black, white, 0.0)), np.asarray(black))
    assert np.array_equal(np.asarray(blend_upscalers(black, white, 1.0)), np.asarray(white))
    half = np.asarray(blend_upscalers(black, white, 0.5))
    assert half[0, 0].tolist() == [100, 50, 25]
    grey = blend_upscalers(black, Image.new("L", (8, 8), 255), 0.5)  # converted to the first's mode
    assert grey.mode == "RGB" and np.asarray(grey)[0, 0].tolist() == [127, 127, 127]
    with pytest.raises(ValueError, match="cannot blend"):
        blend_upscalers(black, Image.new("RGB", (4, 4)), 0.5)


def test_hires_adapter_returns_the_exact_size_and_names_the_field(library: UpscalerLibrary) -> None:
    upscale = library_image_upscale(library)
    assert upscale(random_image(32, 24), "tiny_x2", 70, 48).size == (70, 48)
    with pytest.raises(RequestValidationError) as caught:
        upscale(random_image(32, 24), "SwinIR 4x", 64, 48)
    assert caught.value.field == "hr_upscaler"
    assert "tiny_x2" in caught.value.message
