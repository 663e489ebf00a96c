"""From an img2img request's input image and mask to what the denoising loop needs, and
from the generated image back to the output (the original pasted over the kept area).

Follows A1111's ``StableDiffusionProcessingImg2Img.init``: the mask is made binary, inverted
for "Inpaint not masked", blurred; "Only masked" crops the mask's padded box, generates it at
full size and pastes it back; the kept area of the output is the input's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from modules.processing.editing.image_ops import (
    RESIZE_MODES,
    binary_mask,
    blur_mask,
    composite_original,
    crop_region,
    fill_masked,
    flatten,
    invert_mask,
    resize_image,
)
from modules.processing.editing.img2img_request import Img2ImgRequest

__all__ = ["PreparedInput", "finish_output", "latent_mask", "pixels_to_tensor", "prepare_input"]

LATENT_UPSCALE = RESIZE_MODES[3]


@dataclass(frozen=True)
class PreparedInput:
    """One input image, ready to encode.

    Attributes:
        init: RGB image to encode; request width x height (for "Just resize (latent upscale)"
            the input's own size, rounded down to a multiple of 8: its latents are resized).
        mask: L mask at the generation size, blurred (255 = repaint), or None for img2img.
        base: RGB image the output is composited onto (the input at the output size).
        overlay: L alpha of the generated pixels over ``base`` (0 = the input's own pixel).
        paste_box: "Only masked": where in ``base`` the generated crop goes, else None.
    """

    init: Image.Image
    mask: Image.Image | None = None
    base: Image.Image | None = None
    overlay: Image.Image | None = None
    paste_box: tuple[int, int, int, int] | None = None


def _img2img_input(request: Img2ImgRequest, original: Image.Image) -> PreparedInput:
    if request.resize_mode == LATENT_UPSCALE:
        width, height = max(8, original.width // 8 * 8), max(8, original.height // 8 * 8)
        return PreparedInput(original.crop((0, 0, width, height)))
    return PreparedInput(resize_image(original, request.width, request.height, request.resize_mode))


def _overlay(blurred: Image.Image) -> Image.Image:
    """A1111 doubles the blurred mask for the overlay: the generated pixels win from half-way
    up the blurred edge, and the input's own pixels stay only where the mask is near zero."""
    return blurred.point(lambda value: min(255, value * 2))


def prepare_input(request: Img2ImgRequest, image: Image.Image) -> PreparedInput | None:
    """Prepare one input image; None when inpainting has nothing to repaint (empty mask)."""
    original = flatten(image)
    if request.mask is None:
        return _img2img_input(request, original)
    mask = binary_mask(request.mask, original.size)
    if request.inpaint_not_masked:
        mask = invert_mask(mask)
    if mask.getbbox() is None:
        return None
    blurred = blur_mask(mask, request.mask_blur_x, request.mask_blur_y)
    width, height = request.width, request.height
    if request.inpaint_only_masked:
        box = crop_region(blurred, request.only_masked_padding, width, height)
        # The box has the output's aspect ratio unless the image edge clipped it; a plain stretch
        # is then undone exactly when the result is pasted back.
        fit = RESIZE_MODES[0]
        init = resize_image(original.crop(box), width, height, fit)
        generation_mask = resize_image(blurred.crop(box), width, height, fit)
        prepared = PreparedInput(init, generation_mask, original, _overlay(blurred), box)
    else:
        mode = RESIZE_MODES[0] if request.resize_mode == LATENT_UPSCALE else request.resize_mode
        init = resize_image(original, width, height, mode)
        generation_mask = resize_image(blurred, width, height, mode)
        prepared = PreparedInput(init, generation_mask, init, _overlay(generation_mask))
    if request.masked_content == "fill":
        filled = fill_masked(prepared.init, generation_mask.point(lambda value: 255 if value > 127 else 0))
        prepared = PreparedInput(filled, prepared.mask, prepared.base, prepared.overlay, prepared.paste_box)
    return prepared


def pixels_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (1, 3, H, W) float tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def latent_mask(mask: Image.Image, latent_size: tuple[int, int]) -> torch.Tensor:
    """The repaint mask at latent resolution (1, 1, h, w), rounded to 0/1 as A1111 does, so
    the blurred edge is decided per latent pixel. ``latent_size`` is (h, w)."""
    small = mask.convert("L").resize((latent_size[1], latent_size[0]), Image.Resampling.BILINEAR)
    array = np.around(np.asarray(small, dtype=np.float32) / 255.0)
    return torch.from_numpy(array)[None, None]


def finish_output(prepared: PreparedInput, generated: Image.Image) -> Image.Image:
    """The output image: the generated one, or for inpainting the input with the generated
    pixels laid over the masked area (pasted back into place for "Only masked")."""
    if prepared.overlay is None or prepared.base is None:
        return generated
    if prepared.paste_box is None:
        return composite_original(generated, prepared.base, prepared.overlay)
    left, top, right, bottom = prepared.paste_box
    canvas = prepared.base.copy()
    canvas.paste(generated.resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
    return composite_original(canvas, prepared.base, prepared.overlay)
