"""Tiny random-weight upscalers in a real spandrel architecture, saved as users' files are,
and random test pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact

__all__ = ["compact_state", "random_image", "write_tiny_upscaler"]


def compact_state(scale: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-weight RealESRGAN Compact (SRVGGNetCompact) with 8 features and 2 convolutions."""
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in Compact(num_feat=8, num_conv=2, upscale=scale).state_dict().items()}


def write_tiny_upscaler(path: Path, scale: int, seed: int = 0) -> Path:
    """Save a tiny Compact upscaler as safetensors at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(compact_state(scale, seed), str(path))
    return path


def random_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}.get(mode, 1)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
