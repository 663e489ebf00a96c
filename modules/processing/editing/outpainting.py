"""Outpainting: A1111's "Poor man's outpainting" and "Outpainting mk2" img2img scripts.

Both grow the canvas on the chosen sides and inpaint only the new bands, so they are a
rewrite of an img2img request into an inpainting one on a bigger canvas; the loop is the
ordinary inpainting loop. They differ in what the new bands start from:

* Poor man's: the ``Masked content`` choice (``fill`` by default: the edge colours).
* mk2: the edge colours plus noise whose strength grows with the distance from the old
  edge (``fall-off exponent``; lower = the noise grows sooner, for more new detail), scaled by
  ``colour variation``; then the bands are denoised from that start ("original" content).
  A1111's mk2 shapes its noise in the frequency domain; this is our simpler take on the
  same idea, not a copy of that algorithm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from modules.processing.editing.image_ops import expand_canvas, flatten
from modules.processing.editing.img2img_request import MASKED_CONTENT, Img2ImgRequest
from modules.processing.errors import RequestValidationError
from modules.processing.requests import check_float, check_int

__all__ = ["DIRECTIONS", "OUTPAINT_SCRIPTS", "apply_outpaint_script"]

DIRECTIONS = ("left", "right", "up", "down")
POOR_MANS = "Poor man's outpainting"
MK2 = "Outpainting mk2"
OUTPAINT_SCRIPTS = (POOR_MANS, MK2)
# A1111's positional ``script_args`` of each script, and their defaults (reference §1.6).
_ARG_NAMES = {
    POOR_MANS: ("pixels", "mask_blur", "inpainting_fill", "direction"),
    MK2: ("info", "pixels", "mask_blur", "direction", "noise_q", "color_variation"),
}
_DEFAULTS = {
    POOR_MANS: {"pixels": 128, "mask_blur": 4, "inpainting_fill": "fill", "direction": list(DIRECTIONS)},
    MK2: {"pixels": 128, "mask_blur": 8, "direction": list(DIRECTIONS), "noise_q": 1.0, "color_variation": 0.05},
}


def _named_args(script: str, args: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """A1111's positional list (a shorter one leaves the rest at their defaults) or a dict of
    the same names, over the script's defaults; mk2's ``info`` is A1111's help text, ignored."""
    names = _ARG_NAMES[script]
    if isinstance(args, Mapping):
        named = dict(args)
    elif isinstance(args, list | tuple):
        if len(args) > len(names):
            raise RequestValidationError("script_args", f"{script} takes at most {len(names)} arguments "
                                                        f"({', '.join(names)}); got {len(args)}")
        named = dict(zip(names, args, strict=False))
    else:
        raise RequestValidationError("script_args", f"must be a list in A1111's order ({', '.join(names)}) "
                                                    f"or an object of those names; got {args!r}")
    unknown = set(named) - set(names)
    if unknown:
        raise RequestValidationError("script_args", f"{script} has no argument {sorted(unknown)[0]!r}")
    return {**_DEFAULTS[script], **{k: v for k, v in named.items() if v is not None and k != "info"}}


def _masked_content(value: Any) -> str:
    """Poor man's "Masked content": A1111 sends its index (0 fill .. 3 latent nothing); a name works too."""
    if isinstance(value, str) and value in MASKED_CONTENT:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(MASKED_CONTENT):
        return MASKED_CONTENT[value]
    options = ", ".join(f"{index} ({name})" for index, name in enumerate(MASKED_CONTENT))
    raise RequestValidationError("script_args.inpainting_fill", f"must be one of {options}; got {value!r}")


def _directions(value: Any) -> tuple[str, ...]:
    chosen = (value,) if isinstance(value, str) else tuple(value or ())
    if not chosen or any(d not in DIRECTIONS for d in chosen):
        raise RequestValidationError("script_args.direction",
                                     f"must be some of {', '.join(DIRECTIONS)}; got {value!r}")
    return chosen


def _noisy_bands(canvas: Image.Image, mask: Image.Image, pixels: int, fall_off: float, variation: float,
                 seed: int) -> Image.Image:
    """mk2's start: inside the bands, edge colours plus noise that grows with the distance from
    the old image (0 at its edge, full at ``pixels`` out), raised to ``fall_off``."""
    band = np.asarray(mask, dtype=np.float32) / 255.0
    distance = _distance_from_kept(band) / max(pixels, 1)
    strength = np.clip(distance, 0.0, 1.0) ** max(fall_off, 1e-3)
    base = np.asarray(canvas, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 255.0 * (0.25 + variation), base.shape)
    noisy = base + noise * strength[..., None] * band[..., None]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _distance_from_kept(band: np.ndarray) -> np.ndarray:
    """Per-pixel distance (px, along rows/columns) from the nearest kept pixel."""
    height, width = band.shape
    kept = band < 0.5
    rows, cols = np.nonzero(kept)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    y = np.arange(height)[:, None]
    x = np.arange(width)[None, :]
    dy = np.maximum(np.maximum(top - y, y - bottom), 0)
    dx = np.maximum(np.maximum(left - x, x - right), 0)
    return np.maximum(dx, dy).astype(np.float32)


def apply_outpaint_script(request: Img2ImgRequest, script: str,
                          args: Sequence[Any] | Mapping[str, Any]) -> Img2ImgRequest:
    """The inpainting request that outpaints ``request``'s first input with ``script``.

    The canvas is the input grown by ``pixels`` on each chosen side (its size becomes the
    request's width and height); only the new bands are repainted ("Whole picture").

    Raises:
        RequestValidationError: unknown script or a bad argument, named.
    """
    if script not in OUTPAINT_SCRIPTS:
        raise RequestValidationError("script_name", f"must be one of {', '.join(OUTPAINT_SCRIPTS)}; got {script!r}")
    named = _named_args(script, args)
    check_int("script_args.pixels", named["pixels"], 8, 256)
    check_int("script_args.mask_blur", named["mask_blur"], 0, 64)
    directions = _directions(named["direction"])
    source = flatten(request.init_images[0])
    pixels = named["pixels"] // 8 * 8
    canvas, mask = expand_canvas(source.crop((0, 0, source.width // 8 * 8, source.height // 8 * 8)), pixels,
                                 directions)
    content = "original"
    if script == POOR_MANS:
        content = _masked_content(named["inpainting_fill"])
    else:
        check_float("script_args.noise_q", named["noise_q"], 0.0, 4.0)
        check_float("script_args.color_variation", named["color_variation"], 0.0, 1.0)
        canvas = _noisy_bands(canvas, mask, pixels, named["noise_q"], named["color_variation"], max(request.seed, 0))
    return dataclasses.replace(
        request, init_images=(canvas,), mask=mask, width=canvas.width, height=canvas.height,
        masked_content=content, mask_blur_x=named["mask_blur"], mask_blur_y=named["mask_blur"],
        inpaint_not_masked=False, inpaint_only_masked=False, resize_mode="Just resize")
