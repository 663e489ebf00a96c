"""SD1.x (Rombach et al. 2022; CompVis/RunwayML v1.x): an 860 M UNet on OpenAI CLIP ViT-L/14 text
features (768 wide), a 4-channel VAE, noise prediction, trained at 512 px."""

from __future__ import annotations

from modules.families.base import Capabilities, CheckpointKeys, FamilyDefaults, LatentFormat, ModelFamily
from modules.families.stable_diffusion import INPAINT_CHANNELS, UNET_IN_KEY, unet_in_channels

__all__ = ["AYS_SD15", "SD15", "SD15_INPAINT", "SD_LATENT", "UNET_IN_KEY", "recognise", "with_inpaint"]

#: Sabour et al. 2024, "Align Your Steps", the published SD1.5 sigmas (also A1111's for SD2.x).
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
#: SD's VAE (shared by SD2.x): scale 0.18215 (Rombach et al. 2022, Appendix G); preview factors are
#: the widely used least-squares fit of its latents to RGB.
SD_LATENT = LatentFormat(4, 0.18215, ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264),
                                      (-0.184, -0.271, -0.473)))
TEXT_WIDTH = 768

SD15 = ModelFamily("sd15", "SD1.x", "sd15", "StableDiffusionPipeline", SD_LATENT, "epsilon",
                   FamilyDefaults(size=512), Capabilities(), TEXT_WIDTH, AYS_SD15)
SD15_INPAINT = ModelFamily("sd15_inpaint", "SD1.x inpainting", "sd15", "StableDiffusionInpaintPipeline", SD_LATENT,
                           "epsilon", FamilyDefaults(size=512), Capabilities(inpaint_channels=INPAINT_CHANNELS),
                           TEXT_WIDTH, AYS_SD15)
TEXT_ENCODER_KEY = "cond_stage_model.transformer.text_model.final_layer_norm.weight"


def with_inpaint(plain: ModelFamily, inpaint: ModelFamily, in_channels: int) -> ModelFamily:
    """The plain family or its inpainting variant, by the UNet's input channels."""
    return inpaint if in_channels == plain.latent.channels + INPAINT_CHANNELS else plain


def recognise(keys: CheckpointKeys) -> ModelFamily | None:
    """SD1.x: an LDM UNet with OpenAI CLIP under ``cond_stage_model.transformer``."""
    in_channels = unet_in_channels(keys)
    if in_channels is None or not keys.has(TEXT_ENCODER_KEY):
        return None
    return with_inpaint(SD15, SD15_INPAINT, in_channels)
