"""Read a single-object scene back from pixels, with no learned model.

The demo model's quality gates compare what a generated image shows with what its prompt
asked for. Each attribute is measured directly:

* background colour: the median of the border pixels, named by the nearest palette colour;
* foreground: pixels far from that background colour; the largest connected blob is the object;
* colour: the median of the object's pixels, named by the nearest palette colour;
* position: the centre of the object's bounding box, in thirds of the image (the grid the captions use);
* shape: the object's tight crop, resized to 32x32, against templates of every shape drawn by
  :func:`modules.demo.scenes.draw_shape`; the best intersection-over-union wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from modules.demo.scenes import COLOURS, SHAPES, draw_shape

__all__ = ["Reading", "read_scene"]

_TEMPLATE_SIDE = 32
# Squared RGB distance from the background above which a pixel counts as foreground.
_FOREGROUND_DISTANCE_SQ = 70.0**2
_MIN_OBJECT_PIXELS = 12


@dataclass(frozen=True)
class Reading:
    """What the scorer saw; ``None`` where no object was found."""

    background: str
    colour: str | None
    shape: str | None
    position: str | None


def _nearest_colour(rgb: np.ndarray) -> str:
    """Name of the palette colour nearest to ``rgb`` (shape (3,), 0..255)."""
    names = list(COLOURS)
    palette = np.array([COLOURS[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((palette - rgb) ** 2).sum(axis=1)))]


def _tight_crop(mask: np.ndarray) -> np.ndarray:
    """``mask`` cut to its bounding box and resized to the template side (bool array)."""
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    image = Image.fromarray(crop.astype(np.uint8) * 255).resize((_TEMPLATE_SIDE, _TEMPLATE_SIDE), Image.BILINEAR)
    return np.asarray(image) >= 128


@lru_cache(maxsize=1)
def _templates() -> dict[str, np.ndarray]:
    """Each shape drawn large, then tight-cropped like a measured object."""
    templates = {}
    for shape in SHAPES:
        canvas = Image.new("L", (128, 128), 0)
        draw_shape(ImageDraw.Draw(canvas), shape, (16, 16, 112, 112), 255, 0)
        templates[shape] = _tight_crop(np.asarray(canvas) >= 128)
    return templates


def _classify_shape(mask: np.ndarray) -> str:
    crop = _tight_crop(mask)
    scores = {}
    for shape, template in _templates().items():
        scores[shape] = (crop & template).sum() / max((crop | template).sum(), 1)
    return max(scores, key=scores.__getitem__)


def _position(mask: np.ndarray) -> str:
    # The bounding-box centre, not the centroid: a triangle's centroid sits low in its box.
    ys, xs = np.nonzero(mask)
    side_y, side_x = mask.shape
    column = int(np.clip((xs.min() + xs.max() + 1) / 2 * 3 // side_x, 0, 2))
    row = int(np.clip((ys.min() + ys.max() + 1) / 2 * 3 // side_y, 0, 2))
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[column]
    return " ".join(p for p in (vertical, horizontal) if p) or "center"


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask``, holes inside it left as they are."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, index=range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def read_scene(image: Image.Image) -> Reading:
    """Measure background colour, object colour, shape and position of a one-object image.

    Args:
        image: RGB image of any size (the demo model draws 128x128).

    Returns:
        A :class:`Reading`; ``colour``/``shape``/``position`` are ``None`` when fewer than
        12 pixels differ from the background.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background_rgb = np.median(border, axis=0)
    background = _nearest_colour(background_rgb)
    distance = ((pixels - background_rgb) ** 2).sum(axis=2)
    mask = _largest_blob(distance > _FOREGROUND_DISTANCE_SQ)
    if mask.sum() < _MIN_OBJECT_PIXELS:
        return Reading(background, None, None, None)
    colour = _nearest_colour(np.median(pixels[mask], axis=0))
    return Reading(background, colour, _classify_shape(mask), _position(mask))
