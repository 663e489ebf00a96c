"""Cheap live previews: latents to RGB with a fixed linear map, no extra weights.

Each latent channel correlates roughly linearly with RGB; a C x 3 matrix fitted once per latent
space (the family's ``LatentFormat.preview_factors``) gives a recognisable thumbnail at 1/8
resolution for the cost of one matmul (the "Approx cheap" preview of A1111).
"""

from __future__ import annotations

import torch
from PIL import Image

from modules.families.registry import family_of

__all__ = ["latents_to_preview"]



def latents_to_preview(latents: torch.Tensor, family: str = "sd15", index: int = 0) -> Image.Image:
    """RGB preview of image ``index`` of a latent batch.

    Args:
        latents: (B, C, h, w) latents as the sampler holds them (not divided by the VAE
            scaling factor).
        family: model family id (an unknown one previews as SD1.x).
        index: which image of the batch.

    Returns:
        A (w, h) RGB image, 1/8 of the output size.
    """
    latent = latents[index].detach().to("cpu", torch.float32)
    if not family_of(family).latent.preview_factors:  # no fitted map for this latent space: its first 3 channels
        rgb = latent[:3].permute(1, 2, 0)
        pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
        return Image.fromarray(pixels, mode="RGB")
    factors = torch.tensor(family_of(family).latent.preview_factors)
    if latent.shape[0] != factors.shape[0]:
        latent = latent[: factors.shape[0]]
    rgb = torch.einsum("chw,cr->hwr", latent, factors)
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, mode="RGB")
