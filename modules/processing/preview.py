"""Cheap live previews: latents to RGB with a fixed linear map, no extra weights.

Each SD latent channel correlates roughly linearly with RGB; a 4x3 matrix fitted once per
latent space gives a recognisable thumbnail at 1/8 resolution for the cost of one matmul
(the "Approx cheap" preview of A1111). The factors are the widely used fitted values for the
SD1.x/SD2.x and SDXL VAEs.
"""

from __future__ import annotations

import torch
from PIL import Image

__all__ = ["latents_to_preview"]

_SD_FACTORS = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
_SDXL_FACTORS = (
    (0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163), (-0.3730, -0.2499, -0.2088),
)


def latents_to_preview(latents: torch.Tensor, family: str = "sd15", index: int = 0) -> Image.Image:
    """RGB preview of image ``index`` of a latent batch.

    Args:
        latents: (B, 4, h, w) latents as the sampler holds them (not divided by the VAE
            scaling factor).
        family: model family id; "sdxl*" uses the SDXL factors.
        index: which image of the batch.

    Returns:
        A (w, h) RGB image, 1/8 of the output size.
    """
    factors = torch.tensor(_SDXL_FACTORS if family.startswith("sdxl") else _SD_FACTORS)
    latent = latents[index].detach().to("cpu", torch.float32)
    if latent.shape[0] != factors.shape[0]:
        latent = latent[: factors.shape[0]]
    rgb = torch.einsum("chw,cr->hwr", latent, factors)
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, mode="RGB")
