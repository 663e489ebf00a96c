"""Image-level upscaling for the Extras tab and Hires. fix: "Scale by", "Scale to", and the
blend of two upscalers.

The model work itself (tiles, feathered blend, repeated passes) lives with the models in
``modules.models.upscalers``: an ``Upscaler`` must be usable on its own, and models sit below
processing, so they cannot import from here. This module decides *what size* to ask for.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from modules.models.upscalers import UnknownUpscalerError, Upscaler, UpscalerLibrary
from modules.processing.errors import RequestValidationError

__all__ = ["blend_upscalers", "cover_scale", "library_image_upscale", "upscale_by", "upscale_to"]


def upscale_by(upscaler: Upscaler, image: Image.Image, scale: float) -> Image.Image:
    """Extras "Scale by": ``image`` (any size, mode kept) times ``scale`` (> 0).

    Returns an image of ``(round(W * scale), round(H * scale))``. A model upscaler runs as
    many passes as it takes (at most 3) and Lanczos closes the remaining difference.
    """
    return upscaler.upscale(image, scale)


def cover_scale(size: tuple[int, int], width: int, height: int) -> float:
    """The smallest factor at which ``size`` (W, H) covers ``width`` x ``height``."""
    return max(width / size[0], height / size[1])


def upscale_to(upscaler: Upscaler, image: Image.Image, width: int, height: int, crop: bool) -> Image.Image:
    """Extras "Scale to": an image of exactly ``width`` x ``height``.

    With ``crop`` ("Crop to fit") the image is upscaled to cover the target, keeping its aspect
    ratio, and the centre is cut out, as A1111 does. Without it the cover-size result is
    stretched to the target (A1111 would instead return the cover size itself, not the size
    asked for).
    """
    scaled = upscaler.upscale(image, cover_scale(image.size, width, height))
    if scaled.size == (width, height):
        return scaled
    if not crop:
        return scaled.resize((width, height), Image.Resampling.LANCZOS)
    # The cover size is at least the target on both sides (rounding keeps the limiting side exact).
    left, top = max(0, (scaled.width - width) // 2), max(0, (scaled.height - height) // 2)
    return scaled.crop((left, top, left + width, top + height))


def blend_upscalers(first: Image.Image, second: Image.Image, visibility: float) -> Image.Image:
    """A1111's "Upscaler 2 visibility": ``first * (1 - visibility) + second * visibility``.

    Both images must have the same size; ``second`` is converted to ``first``'s mode.
    ``visibility`` is in [0, 1]: 0 returns ``first``, 1 returns ``second``.
    """
    if first.size != second.size:
        raise ValueError(f"cannot blend a {first.size} image with a {second.size} one")
    if second.mode != first.mode:
        second = second.convert(first.mode)
    return Image.blend(first, second, visibility)


def library_image_upscale(library: UpscalerLibrary,
                          field: str = "hr_upscaler") -> Callable[[Image.Image, str, int, int], Image.Image]:
    """An ``(image, upscaler name, width, height) -> image`` function over ``library``, the
    shape Hires. fix takes for its image upscalers (``hires.ImageUpscale``).

    The result has exactly ``width`` x ``height`` (stretched if the aspect ratio differs). An
    unknown name raises ``RequestValidationError(field, ...)`` listing the choices.
    """

    def upscale(image: Image.Image, name: str, width: int, height: int) -> Image.Image:
        try:
            upscaler = library.get(name)
        except UnknownUpscalerError as error:
            raise RequestValidationError(field, str(error)) from None
        return upscale_to(upscaler, image, width, height, crop=False)

    return upscale
