"""SD2.x (Stability AI, 2022): the SD UNet on OpenCLIP ViT-H/14 text features (1024 wide), SD's
VAE; 2.x-768 predicts velocity (Salimans & Ho 2022), which its keys do not say (the loader asks)."""

from __future__ import annotations

from modules.families.base import Capabilities, CheckpointKeys, FamilyDefaults, ModelFamily
from modules.families.sd1 import AYS_SD15, SD_LATENT, with_inpaint
from modules.families.stable_diffusion import INPAINT_CHANNELS, unet_in_channels

__all__ = ["SD2", "SD2_INPAINT", "recognise"]

TEXT_WIDTH = 1024
SD2 = ModelFamily("sd2", "SD2.x", "sd2", "StableDiffusionPipeline", SD_LATENT, "epsilon",
                  FamilyDefaults(size=768), Capabilities(), TEXT_WIDTH, AYS_SD15)
SD2_INPAINT = ModelFamily("sd2_inpaint", "SD2.x inpainting", "sd2", "StableDiffusionInpaintPipeline", SD_LATENT,
                          "epsilon", FamilyDefaults(size=512), Capabilities(inpaint_channels=INPAINT_CHANNELS),
                          TEXT_WIDTH, AYS_SD15)


def recognise(keys: CheckpointKeys) -> ModelFamily | None:
    """SD2.x: an LDM UNet with OpenCLIP under ``cond_stage_model.model``."""
    in_channels = unet_in_channels(keys)
    if in_channels is None or not keys.has("cond_stage_model.model.ln_final.weight"):
        return None
    return with_inpaint(SD2, SD2_INPAINT, in_channels)
