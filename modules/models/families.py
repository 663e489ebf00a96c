"""Model families and their detection from checkpoint keys.

A single-file checkpoint does not say what it is; its tensor names and shapes do. The rules:
the text-encoder layout tells SD1.x (OpenAI CLIP under ``cond_stage_model.transformer``),
SD2.x (OpenCLIP under ``cond_stage_model.model``) and SDXL (two encoders under
``conditioner.embedders``); the first UNet convolution's input channels tell inpainting (9)
from plain (4) models. Whether an SD2.x model predicts noise or velocity is not in its keys;
the loader settles it (see ``loader.detect_v_prediction``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from modules.paths import CONFIGS_DIR

__all__ = ["FAMILIES", "ModelFamily", "UnknownFamilyError", "detect_diffusers_family", "detect_family"]

UNET_IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"
_CROSS_ATTN_KEY = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.attn2.to_k.weight"


class UnknownFamilyError(ValueError):
    """The keys do not look like any supported Stable Diffusion checkpoint."""


@dataclass(frozen=True)
class ModelFamily:
    """A model family: its label, its shipped diffusers config folder and pipeline class."""

    id: str
    label: str
    pipeline_class: str
    is_xl: bool = False
    is_inpaint: bool = False

    @property
    def config_dir(self) -> Path:
        return CONFIGS_DIR / self.id


FAMILIES: Mapping[str, ModelFamily] = MappingProxyType(
    {
        f.id: f
        for f in (
            ModelFamily("sd15", "SD1.x", "StableDiffusionPipeline"),
            ModelFamily("sd15_inpaint", "SD1.x inpainting", "StableDiffusionInpaintPipeline", is_inpaint=True),
            ModelFamily("sd2", "SD2.x", "StableDiffusionPipeline"),
            ModelFamily("sd2_inpaint", "SD2.x inpainting", "StableDiffusionInpaintPipeline", is_inpaint=True),
            ModelFamily("sdxl", "SDXL", "StableDiffusionXLPipeline", is_xl=True),
            ModelFamily("sdxl_inpaint", "SDXL inpainting", "StableDiffusionXLInpaintPipeline", is_xl=True,
                        is_inpaint=True),
        )
    }
)


def _with_inpaint(base: str, in_channels: int | None) -> ModelFamily:
    if in_channels == 9:
        return FAMILIES[base + "_inpaint"]
    if in_channels not in (4, None):
        raise UnknownFamilyError(f"UNet has {in_channels} input channels; only 4 (txt2img) and 9 (inpainting) "
                                 "are supported")
    return FAMILIES[base]


def detect_family(has_key: Callable[[str], bool], shape_of: Callable[[str], tuple[int, ...] | None]) -> ModelFamily:
    """Detect the family of an LDM-layout checkpoint.

    Args:
        has_key: whether a tensor name exists (prefix tests use ``has_key(prefix + ...)``).
        shape_of: the shape of a tensor, or None if absent.

    Raises:
        UnknownFamilyError: not a supported SD checkpoint (names what was found instead).
    """
    unet_in = shape_of(UNET_IN_KEY)
    if unet_in is None:
        raise UnknownFamilyError("no UNet found (missing model.diffusion_model.* keys): not a Stable Diffusion "
                                 "checkpoint, or a LoRA/VAE/embedding file in the checkpoint folder")
    if len(unet_in) != 4:
        raise UnknownFamilyError(f"the UNet's first convolution has shape {list(unet_in)}, not a 4-D kernel")
    in_channels = unet_in[1]
    if has_key("conditioner.embedders.1.model.ln_final.weight"):
        if not has_key("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"):
            raise UnknownFamilyError("SDXL refiner checkpoints are not supported as main models")
        return _with_inpaint("sdxl", in_channels)
    if has_key("cond_stage_model.model.ln_final.weight"):
        return _with_inpaint("sd2", in_channels)
    if has_key("cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        return _with_inpaint("sd15", in_channels)
    # No text encoder in the file: fall back on the UNet's cross-attention width.
    for block in (1, 4):
        context = shape_of(_CROSS_ATTN_KEY.format(block))
        if context is not None:
            by_width = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
            if context[1] in by_width:
                return _with_inpaint(by_width[context[1]], in_channels)
    raise UnknownFamilyError("the text encoder layout matches no supported family (SD1.x, SD2.x, SDXL)")


def detect_diffusers_family(folder: Path) -> ModelFamily:
    """Detect the family of a diffusers folder from its model_index.json and UNet config."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        text_config = folder / "text_encoder" / "config.json"
        text = json.loads(text_config.read_text(encoding="utf-8")) if text_config.is_file() else {}
    except (OSError, ValueError) as error:
        raise UnknownFamilyError(f"unreadable diffusers folder: {error}") from None
    in_channels = unet.get("in_channels", 4)
    if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")):
        return _with_inpaint("sdxl", in_channels)
    # SD2.x: OpenCLIP text encoder (GELU, where OpenAI's CLIP uses quick-GELU), 1024 wide.
    is_sd2 = unet.get("cross_attention_dim") == 1024 or text.get("hidden_act") == "gelu"
    base = "sd2" if is_sd2 else "sd15"
    return _with_inpaint(base, in_channels)
