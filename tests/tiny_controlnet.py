"""A tiny random-weight ControlNet made from a tiny UNet, saved as users keep ControlNets in
``models/ControlNet`` (a diffusers folder), for tests that go through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def tiny_controlnet(unet: Any, seed: int = 0) -> Any:
    """A ``ControlNetModel`` shaped like ``unet`` with every weight random.

    ``from_unet`` zero-initialises the output convolutions (the paper's zero convolutions), which
    would make the ControlNet add nothing; random values make it act on the image.
    """
    from diffusers import ControlNetModel

    model = ControlNetModel.from_unet(unet, conditioning_channels=3)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.abs().sum():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def write_tiny_controlnet(folder: Path, unet: Any, seed: int = 0) -> Path:
    """Save a tiny ControlNet for ``unet`` as a diffusers folder at ``folder``; returns it."""
    tiny_controlnet(unet, seed).save_pretrained(folder, safe_serialization=True)
    return folder
