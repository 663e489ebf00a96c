"""Pixel-space preparation: resize modes, masks, the "Only masked" box, fill and outpaint canvas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.processing.editing.image_ops import (
    RESIZE_MODES,
    binary_mask,
    blur_mask,
    crop_region,
    expand_canvas,
    fill_masked,
    flatten,
    resize_image,
)


def _halves(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 2 - 1, size[1]), fill=(255, 0, 0))
    return image


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_every_mode_gives_the_asked_size(mode: str) -> None:
    assert resize_image(_halves((100, 50)), 64, 64, mode).size == (64, 64)


def test_crop_and_resize_cuts_the_sides_of_a_wide_image() -> None:
    wide = Image.new("RGB", (200, 50), (0, 255, 0))
    wide.paste((255, 0, 0), (0, 0, 50, 50))  # a red first quarter is cut off
    out = np.asarray(resize_image(wide, 64, 64, "Crop and resize"))
    assert out[:, 0].tolist() == [[0, 255, 0]] * 64


def test_resize_and_fill_extends_the_edges_instead_of_cropping() -> None:
    wide = _halves((128, 64))
    out = np.asarray(resize_image(wide, 64, 64, "Resize and fill"))
    assert out[0, 5].tolist() == [255, 0, 0] and out[63, 60].tolist() == [0, 0, 255]  # filled bands
    assert out[32, 5].tolist() == [255, 0, 0] and out[32, 60].tolist() == [0, 0, 255]  # whole image kept


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="Just resize"):
        resize_image(_halves((8, 8)), 8, 8, "Stretch")


def test_mask_reads_a_painted_layer_alpha_or_grey_and_stretches() -> None:
    layer = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((0, 0, 9, 9), fill=(255, 255, 255, 255))
    mask = binary_mask(layer, (40, 20))
    assert mask.size == (40, 20) and mask.getpixel((5, 5)) == 255 and mask.getpixel((30, 5)) == 0
    grey = binary_mask(Image.new("L", (4, 4), 100))
    assert set(grey.getdata()) == {0}


def test_blur_spreads_only_along_the_axis_asked() -> None:
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (18, 18, 22, 22))
    blurred = np.asarray(blur_mask(mask, 4, 0))
    assert blurred[20, 10] > 0 and blurred[10, 20] == 0


def test_crop_region_pads_matches_aspect_and_stays_inside() -> None:
    mask = Image.new("L", (200, 100), 0)
    mask.paste(255, (150, 40, 160, 50))
    left, top, right, bottom = crop_region(mask, 10, 64, 64)
    assert (right - left) == (bottom - top) and left <= 140 and right <= 200 and top <= 30 and bottom >= 60
    assert crop_region(Image.new("L", (8, 8), 0), 4, 8, 8) is None


def test_fill_replaces_the_hole_with_the_surrounding_colour() -> None:
    image = Image.new("RGB", (64, 64), (0, 200, 0))
    image.paste((255, 0, 255), (24, 24, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 24, 40, 40))
    filled = np.asarray(fill_masked(image, mask)).astype(int)
    assert np.abs(filled[32, 32] - [0, 200, 0]).max() < 10 and filled[5, 5].tolist() == [0, 200, 0]


def test_outpaint_canvas_grows_the_chosen_sides_and_masks_only_them() -> None:
    canvas, mask = expand_canvas(_halves((32, 32)), 16, ("left", "down"))
    assert canvas.size == (48, 48) and mask.getpixel((0, 0)) == 255 and mask.getpixel((20, 10)) == 0
    assert mask.getpixel((20, 40)) == 255 and canvas.getpixel((20, 10)) == (255, 0, 0)
    with pytest.raises(ValueError):
        expand_canvas(_halves((8, 8)), 8, ("sideways",))


def test_flatten_puts_transparency_on_white() -> None:
    assert flatten(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
