"""SDXL (Podell et al. 2023): a 2.6 B UNet on two text encoders (OpenAI CLIP ViT-L and OpenCLIP
ViT-bigG, 2048 wide together, plus the pooled bigG embedding), size/crop micro-conditioning, its
own VAE (scale 0.13025), noise prediction, trained at 1024 px."""

from __future__ import annotations

import torch

from modules.families.base import (
    Capabilities,
    CheckpointKeys,
    FamilyDefaults,
    LatentFormat,
    ModelFamily,
    UnknownFamilyError,
)
from modules.families.sd1 import with_inpaint
from modules.families.stable_diffusion import INPAINT_CHANNELS, unet_in_channels

__all__ = ["AYS_SDXL", "SDXL", "SDXL_INPAINT", "micro_conditioning", "recognise"]

#: Sabour et al. 2024, "Align Your Steps", the published SDXL sigmas.
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
SDXL_LATENT = LatentFormat(4, 0.13025, ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250),
                                        (0.1074, 0.0886, -0.0163), (-0.3730, -0.2499, -0.2088)))
TEXT_WIDTH = 2048
_CAPABILITIES = Capabilities(micro_conditioning=True)
SDXL = ModelFamily("sdxl", "SDXL", "sdxl", "StableDiffusionXLPipeline", SDXL_LATENT, "epsilon",
                   FamilyDefaults(size=1024), _CAPABILITIES, TEXT_WIDTH, AYS_SDXL)
SDXL_INPAINT = ModelFamily("sdxl_inpaint", "SDXL inpainting", "sdxl", "StableDiffusionXLInpaintPipeline",
                           SDXL_LATENT, "epsilon", FamilyDefaults(size=1024),
                           Capabilities(micro_conditioning=True, inpaint_channels=INPAINT_CHANNELS),
                           TEXT_WIDTH, AYS_SDXL)


def recognise(keys: CheckpointKeys) -> ModelFamily | None:
    """SDXL base: an LDM UNet with both encoders under ``conditioner.embedders``; a refiner
    (bigG only) is refused."""
    in_channels = unet_in_channels(keys)
    if in_channels is None or not keys.has("conditioner.embedders.1.model.ln_final.weight"):
        return None
    if not keys.has("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"):
        raise UnknownFamilyError("SDXL refiner checkpoints are not supported as main models")
    return with_inpaint(SDXL, SDXL_INPAINT, in_channels)


def micro_conditioning(width: int, height: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SDXL's ``time_ids`` (Podell et al. 2023, Sec. 2.2): original size, crop top-left, target size.

    Returns:
        (batch, 6) tensor ``[h, w, 0, 0, h, w]`` per image: generated at full size, uncropped.
    """
    return torch.tensor([[height, width, 0, 0, height, width]] * batch, device=device, dtype=dtype)
