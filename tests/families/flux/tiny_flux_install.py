"""A tiny FLUX.1 installed in a data folder as users have one, in each checkpoint layout.

- "bfl": ``models/Stable-diffusion/flux1-dev.safetensors`` (transformer only) with
  ``clip_l.safetensors`` and ``t5xxl_fp16.safetensors`` in ``models/text_encoder/`` and
  ``ae.safetensors`` in ``models/VAE/`` (Forge's layout);
- "comfy": one ComfyUI all-in-one file (``model.diffusion_model.*``, ``text_encoders.clip_l.*``,
  ``text_encoders.t5xxl.*``, ``vae.*``), nothing in the part folders;
- "diffusers": a diffusers ``FluxPipeline`` folder (transformer, both encoders, VAE);
- "gguf": a Q8_0 transformer with the parts in their folders, as "bfl".

Every layout holds the same weights (tiny_flux's seed 0 transformer, tiny_flux_parts' encoders
and VAE), so each generates the same image within the precision of its storage.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.families.flux.tiny_flux import COMFY_PREFIX, DEV, TinyFlux, build_tiny_flux, write_flux_bfl_file
from tests.families.flux.tiny_flux_parts import (
    CLIP_PREFIX,
    CLIP_WIDTH,
    T5_PREFIX,
    T5_WIDTH,
    VAE_PREFIX,
    ae_state,
    clip_l_state,
    t5_state,
    tiny_clip_l,
    tiny_flux_vae,
    tiny_t5,
)

__all__ = ["INSTALL_LAYOUTS", "TINY_DEV", "TINY_SCHNELL", "install_tiny_flux", "write_flux_parts"]

INSTALL_LAYOUTS = ("bfl", "comfy", "diffusers", "gguf")
#: The tiny transformer, taking the tiny encoders' widths.
TINY_DEV = replace(DEV, joint_attention_dim=T5_WIDTH, pooled_projection_dim=CLIP_WIDTH)
TINY_SCHNELL = replace(TINY_DEV, guidance=False)


def _parts() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    clip, t5, vae = tiny_clip_l(1), tiny_t5(2), tiny_flux_vae(3)
    return clip_l_state(clip), t5_state(t5), ae_state(vae)


def write_flux_parts(models: Path, vae_name: str = "ae.safetensors") -> None:
    """CLIP-L and T5-XXL (fp16) into ``models/text_encoder``, the VAE into ``models/VAE``."""
    clip, t5, vae = _parts()
    (models / "text_encoder").mkdir(parents=True, exist_ok=True)
    (models / "VAE").mkdir(parents=True, exist_ok=True)
    save_file({k: v.half() for k, v in clip.items()}, str(models / "text_encoder" / "clip_l.safetensors"))
    save_file({k: v.half() for k, v in t5.items()}, str(models / "text_encoder" / "t5xxl_fp16.safetensors"))
    save_file(vae, str(models / "VAE" / vae_name))


def _diffusers_folder(folder: Path, spec: TinyFlux) -> Path:
    build_tiny_flux(spec).save_pretrained(folder / "transformer", safe_serialization=True)
    tiny_clip_l(1).save_pretrained(folder / "text_encoder", safe_serialization=True)
    tiny_t5(2).save_pretrained(folder / "text_encoder_2", safe_serialization=True)
    tiny_flux_vae(3).save_pretrained(folder / "vae", safe_serialization=True)
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],
             "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


def install_tiny_flux(models: Path, layout: str = "bfl", spec: TinyFlux = TINY_DEV,
                      name: str = "flux1-dev") -> Path:
    """Install the tiny FLUX.1 under ``models`` (a data folder's ``models/``) in ``layout``;
    returns the checkpoint's path in ``models/Stable-diffusion``."""
    checkpoints = models / "Stable-diffusion"
    checkpoints.mkdir(parents=True, exist_ok=True)
    if layout == "bfl":
        write_flux_parts(models)
        return write_flux_bfl_file(checkpoints / f"{name}.safetensors", spec)
    if layout == "comfy":
        clip, t5, vae = _parts()
        extra = {**{CLIP_PREFIX + k: v for k, v in clip.items()}, **{T5_PREFIX + k: v for k, v in t5.items()},
                 **{VAE_PREFIX + k: v for k, v in vae.items()}}
        return write_flux_bfl_file(checkpoints / f"{name}.safetensors", spec, prefix=COMFY_PREFIX, extra=extra)
    if layout == "diffusers":
        return _diffusers_folder(checkpoints / name, spec)
    if layout == "gguf":
        from gguf import GGMLQuantizationType

        from tests.families.flux.tiny_flux_gguf import write_flux_gguf_file

        write_flux_parts(models)
        return write_flux_gguf_file(checkpoints / f"{name}-Q8_0.gguf", GGMLQuantizationType.Q8_0, spec)
    raise ValueError(f"unknown layout {layout!r}; one of {INSTALL_LAYOUTS}")
