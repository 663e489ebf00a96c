"""FLUX.1's family records and how its files are recognised.

dev is guidance-distilled (one pass per step, its guidance strength an input: Forge's
"Distilled CFG Scale"), schnell is timestep-distilled for 1-4 steps; both are rectified-flow
transformers over the same 16-channel latents, so LoRAs made for one fit the other's blocks.

Recognition reads names only: the transformer's image and pooled-text embedders (``img_in`` and
``vector_in`` in BFL's names, ``x_embedder`` and ``time_text_embed.text_embedder`` in diffusers'),
which SD3's and Chroma's transformers lack, and ``guidance_in`` for dev. The code that loads,
encodes and calls the model is imported only when a FLUX model is loaded (``pipeline.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modules.families.base import (
    Capabilities,
    CheckpointKeys,
    FamilyCode,
    FamilyDefaults,
    FamilyPipeline,
    LatentFormat,
    ModelFamily,
    PartFolders,
    TextEmbeddings,
    UnknownFamilyError,
)
from modules.families.flux.autoencoder import FLUX_LATENT_CHANNELS, FLUX_VAE_SCALE, FLUX_VAE_SHIFT
from modules.families.flux.transformer_layouts import ANCHORS, BFL, BFL_PREFIXES, DIFFUSERS, GGUF_SUFFIX

__all__ = ["DEV_SCHEDULER", "FLUX_DEV", "FLUX_LATENT", "FLUX_SCHNELL", "SCHNELL_SCHEDULER", "recognise",
           "recognise_diffusers_folder", "recognise_file"]

#: BFL's flow schedules as diffusers' ``FlowMatchEulerDiscreteScheduler`` configs: dev shifts with
#: the image size (``processing/sampling/flow_samplers.flow_shift``), schnell does not.
DEV_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                 "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
SCHNELL_SCHEDULER = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}

#: No fitted latent-to-RGB factors ship for FLUX's autoencoder yet: the live preview shows its
#: first three channels (``processing/sampling/preview.py``).
FLUX_LATENT = LatentFormat(FLUX_LATENT_CHANNELS, FLUX_VAE_SCALE, (), shift_factor=FLUX_VAE_SHIFT)
T5_WIDTH = 4096
_GUIDANCE_KEYS = {BFL: "guidance_in.in_layer.weight", DIFFUSERS: "time_text_embed.guidance_embedder.linear_1.weight"}
_LORA_KEY_MAPS = ("kohya", "bfl", "diffusers")


def _load(path: Path, folders: PartFolders, dtype: Any) -> FamilyPipeline:
    from modules.families.flux.pipeline import load_flux_pipeline

    return load_flux_pipeline(path, folders, dtype)


def _encode(pipeline: Any, text: str) -> TextEmbeddings:
    from modules.families.flux.pipeline import encode_flux_prompt

    return encode_flux_prompt(pipeline, text)


def _denoiser(transformer: Any, distilled_guidance: float | None) -> Any:
    from modules.families.flux.denoiser import FluxDenoiser

    return FluxDenoiser(transformer, distilled_guidance)


_CODE = FamilyCode(load=_load, encode_prompt=_encode, denoiser=_denoiser)
# CFG scale 1 by default (no negative prompt): dev is guidance-distilled and schnell needs none; real
# CFG (a negative prompt with CFG scale above 1) doubles the cost, and the user may still ask for it.
FLUX_DEV = ModelFamily(
    "flux", "FLUX.1-dev", "flux", "FluxPipeline", FLUX_LATENT, "flow",
    FamilyDefaults(size=1024, sampler="Euler", scheduler="Automatic", cfg_scale=1.0, steps=20),
    Capabilities(negative_prompt=True, distilled_guidance=True, controlnet=False, lora_key_maps=_LORA_KEY_MAPS),
    T5_WIDTH, code=_CODE)
FLUX_SCHNELL = ModelFamily(
    "flux_schnell", "FLUX.1-schnell", "flux", "FluxPipeline", FLUX_LATENT, "flow",
    FamilyDefaults(size=1024, sampler="Euler", scheduler="Automatic", cfg_scale=1.0, steps=4),
    Capabilities(negative_prompt=True, controlnet=False, lora_key_maps=_LORA_KEY_MAPS),
    T5_WIDTH, code=_CODE)


def _variant(guidance_distilled: bool) -> ModelFamily:
    return FLUX_DEV if guidance_distilled else FLUX_SCHNELL


def recognise(keys: CheckpointKeys) -> ModelFamily | None:
    """FLUX.1 from a safetensors file's names: BFL's (bare, or under ComfyUI's
    ``model.diffusion_model.``) or diffusers' transformer names."""
    for prefix in BFL_PREFIXES:
        if all(keys.has(prefix + anchor) for anchor in ANCHORS[BFL]):
            return _variant(keys.has(prefix + _GUIDANCE_KEYS[BFL]))
    if all(keys.has(anchor) for anchor in ANCHORS[DIFFUSERS]):
        return _variant(keys.has(_GUIDANCE_KEYS[DIFFUSERS]))
    return None


def recognise_file(path: Path) -> ModelFamily | None:
    """FLUX.1 from a file format SD has no files in: a GGUF-quantized transformer.

    Raises:
        UnknownFamilyError: a GGUF file that holds no FLUX.1 transformer, or a broken one.
    """
    if path.suffix.lower() != GGUF_SUFFIX:
        return None
    from modules.families.flux.transformer_layouts import FluxFileError, detect_flux_transformer

    try:
        found = detect_flux_transformer(path)
    except FluxFileError as error:
        raise UnknownFamilyError(error.detail) from None
    if found is None:
        raise UnknownFamilyError("this GGUF file holds no FLUX.1 transformer (GGUF checkpoints are FLUX.1 only)")
    return _variant(found.guidance_distilled)


def recognise_diffusers_folder(folder: Path, index: dict[str, Any]) -> ModelFamily | None:
    """FLUX.1 from a diffusers folder's ``model_index.json`` (``FluxPipeline``) and transformer config."""
    if index.get("_class_name") != "FluxPipeline":
        return None
    try:
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UnknownFamilyError(f"unreadable FLUX transformer config: {error}") from None
    return _variant(bool(config.get("guidance_embeds", False)))
