"""A FLUX.1 checkpoint in any layout, with its parts, as one diffusers ``FluxPipeline``.

The pipeline is only the container the rest of the studio knows (``transformer``, ``vae``,
``text_encoder``/``text_encoder_2`` and their tokenizers, ``scheduler``, LoRA loading); the
studio's own loop samples it (``processing/sampling/denoise.py``) through ``FluxDenoiser``.
Each part is loaded by our streaming loaders: the transformer from BFL, ComfyUI all-in-one,
diffusers or GGUF files; CLIP-L, T5-XXL and the VAE as ``parts.choose_flux_parts`` settles them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from modules.families.base import FamilyPipeline, PartFolders, TextEmbeddings
from modules.families.flux.family import DEV_SCHEDULER, SCHNELL_SCHEDULER
from modules.families.flux.part_files import FluxWidths
from modules.families.flux.parts import choose_flux_parts, load_part
from modules.families.flux.text_encoders import FluxTextEncoders
from modules.families.flux.tokenizers import T5_MAX_LENGTH, build_flux_clip_tokenizer, build_t5_tokenizer
from modules.families.flux.transformer import load_flux_transformer, resolve_flux_transformer

__all__ = ["encode_flux_prompt", "load_flux_pipeline", "t5_length"]

logger = logging.getLogger(__name__)


def load_flux_pipeline(path: Path, folders: PartFolders, dtype: torch.dtype) -> FamilyPipeline:
    """A ``FluxPipeline`` on the CPU for the FLUX.1 checkpoint at ``path``, and the part files it uses.

    Args:
        path: a transformer-only or all-in-one file (.safetensors/.sft/.gguf) or a diffusers folder.
        folders: where the parts a transformer-only file lacks are, and the user's choice of them.
        dtype: the compute dtype; fp8 and GGUF weights stay compact and are upcast to it per layer.

    Raises:
        FluxFileError / ModelFileError: a broken file. FluxPartError: a part missing or ambiguous.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    found = resolve_flux_transformer(path)
    config = found.config
    widths = FluxWidths(clip=config.pooled_projection_dim, t5=config.joint_attention_dim)
    parts = choose_flux_parts(path, folders.text_encoder, folders.vae, folders.chosen, widths=widths)
    logger.info("FLUX.1-%s (%s, %s): CLIP-L %s, T5-XXL %s, VAE %s", found.variant, found.layout,
                found.storage_dtype, parts.clip_l.name, parts.t5xxl.name, parts.vae.name)
    transformer = load_flux_transformer(found, dtype=dtype)
    schedule = DEV_SCHEDULER if config.guidance_embeds else SCHNELL_SCHEDULER
    pipeline = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(schedule),
        vae=load_part(parts.vae, dtype), transformer=transformer,
        text_encoder=load_part(parts.clip_l, dtype), tokenizer=build_flux_clip_tokenizer(),
        text_encoder_2=load_part(parts.t5xxl, dtype), tokenizer_2=build_t5_tokenizer(),
    )
    separate = tuple(part.name for part in (parts.vae, parts.clip_l, parts.t5xxl) if not part.embedded)
    return FamilyPipeline(pipeline, separate)


def t5_length(pipeline: Any) -> int:
    """T5's fixed prompt length: 512 tokens for dev, 256 for schnell (as BFL trained them)."""
    return T5_MAX_LENGTH["dev" if pipeline.transformer.config.guidance_embeds else "schnell"]


def encode_flux_prompt(pipeline: Any, text: str) -> TextEmbeddings:
    """One prompt's FLUX conditioning: T5's (1, 512 or 256, 4096) hidden states and CLIP-L's
    pooled (1, 768), on the encoders' execution device."""
    encoders = FluxTextEncoders(clip_l=pipeline.text_encoder, clip_tokenizer=pipeline.tokenizer,
                                t5=pipeline.text_encoder_2, t5_tokenizer=pipeline.tokenizer_2)
    embeds = encoders.encode([text], max_length=t5_length(pipeline))
    return TextEmbeddings(embeds.prompt_embeds, embeds.pooled_prompt_embeds)
