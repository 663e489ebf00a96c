"""Between pixels and latents: VAE decode/encode and seamless tiling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.models.memory import execution_device

__all__ = ["circular_padding", "decode_latents", "encode_pixels", "to_pil_images"]


@contextlib.contextmanager
def _vae_precision(vae: Any) -> Iterator[torch.dtype]:
    """Run the VAE in fp32 when its config asks for it (SDXL's VAE overflows in fp16)."""
    dtype = next(vae.parameters()).dtype
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield torch.float32 if upcast else dtype
    finally:
        if upcast:
            vae.to(dtype)


@torch.inference_mode()
def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Decode sampler latents (B, 4, h, w) to images (B, 3, 8h, 8w) in [0, 1], float32 CPU."""
    with _vae_precision(vae) as dtype:
        scaled = latents.to(dtype) / vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None)
        if shift:
            scaled = scaled + shift
        pixels = vae.decode(scaled, return_dict=False)[0]
    return ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu()


@torch.inference_mode()
def encode_pixels(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Encode images (B, 3, H, W) in [-1, 1] to scaled latents (B, 4, H/8, W/8) (the mean)."""
    with _vae_precision(vae) as dtype:
        device = execution_device(vae)  # not the weights' device: with offload they wait on the CPU
        latents = vae.encode(pixels.to(device, dtype), return_dict=False)[0].mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def to_pil_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) images in [0, 1] to RGB PIL images."""
    array = (pixels.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(image) for image in array]


@contextlib.contextmanager
def circular_padding(*models: Any) -> Iterator[None]:
    """Make every Conv2d of ``models`` wrap around at the edges, for seamless tiles.

    This changes the job's own model instances (never library classes) and restores them.
    """
    convs = [m for model in models for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    previous = [conv.padding_mode for conv in convs]
    for conv in convs:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in zip(convs, previous, strict=True):
            conv.padding_mode = mode
