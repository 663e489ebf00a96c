"""What SD1.x, SD2.x and SDXL share: the LDM checkpoint layout of their UNet (CompVis's
``model.diffusion_model.*`` names) and its inpainting variant (Rombach et al. 2022, Sec. 4.5:
five extra input channels, the mask and the masked image's latents)."""

from __future__ import annotations

from collections.abc import Iterable

from modules.families.base import CheckpointKeys, ModelFamily, UnknownFamilyError

__all__ = ["INPAINT_CHANNELS", "UNET_IN_KEY", "cross_attention_width", "recognise_unet_only", "unet_in_channels"]

UNET_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"
_CROSS_ATTN_KEY = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.attn2.to_k.weight"
INPAINT_CHANNELS = 5
_LATENT_CHANNELS = 4


def unet_in_channels(keys: CheckpointKeys) -> int | None:
    """The LDM UNet's input channels (4 plain, 9 inpainting), or None when there is no LDM UNet.

    Raises:
        UnknownFamilyError: an LDM UNet of a kind no SD family has.
    """
    shape = keys.shape(UNET_IN_KEY)
    if shape is None:
        return None
    if len(shape) != 4:
        raise UnknownFamilyError(f"the UNet's first convolution has shape {list(shape)}, not a 4-D kernel")
    if shape[1] not in (_LATENT_CHANNELS, _LATENT_CHANNELS + INPAINT_CHANNELS):
        raise UnknownFamilyError(f"UNet has {shape[1]} input channels; only 4 (txt2img) and 9 (inpainting) "
                                 "are supported")
    return shape[1]


def cross_attention_width(keys: CheckpointKeys) -> int | None:
    """The width of the UNet's text conditioning (its first cross-attention's key input), or None."""
    for block in (1, 4):
        shape = keys.shape(_CROSS_ATTN_KEY.format(block))
        if shape is not None:
            return shape[1]
    return None


def recognise_unet_only(keys: CheckpointKeys, families: Iterable[ModelFamily]) -> ModelFamily | None:
    """A file with an LDM UNet but no text encoder: the family whose text width its
    cross-attention has (768 SD1.x, 1024 SD2.x, 2048 SDXL), plain or inpainting by its input."""
    in_channels, width = unet_in_channels(keys), cross_attention_width(keys)
    if in_channels is None or width is None:
        return None
    wanted = INPAINT_CHANNELS if in_channels > _LATENT_CHANNELS else 0
    return next((f for f in families if f.text_context_width == width and f.latent.channels == _LATENT_CHANNELS
                 and f.capabilities.inpaint_channels == wanted), None)
