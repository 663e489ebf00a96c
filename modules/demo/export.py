"""Export the trained demo model as an A1111-style checkpoint the registry loads like any other."""

from __future__ import annotations

from pathlib import Path

import torch

from modules.demo.architecture import MODEL_NAME, build_scheduler
from modules.demo.training import TrainedModel
from modules.models.config_folder import write_config_folder
from modules.models.ldm_export import save_ldm_checkpoint
from modules.models.loader import build_clip_tokenizer

__all__ = ["export_checkpoint"]


def export_checkpoint(model: TrainedModel, directory: Path, name: str = MODEL_NAME) -> Path:
    """Write ``<name>.safetensors`` (LDM layout, float16) and ``<name>.config/`` into ``directory``.

    float16 halves the file (the 49,408-row token embedding is most of it); the loader
    casts back to the placement's dtype, float32 on the CPU.

    Returns:
        The checkpoint path.
    """
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline(
        vae=model.vae, text_encoder=model.text_encoder, tokenizer=build_clip_tokenizer(), unet=model.unet,
        scheduler=build_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    directory = Path(directory)
    path = save_ldm_checkpoint(pipeline, directory / f"{name}.safetensors", dtype=torch.float16,
                               metadata={"modelspec.title": name, "modelspec.architecture": "stable-diffusion-v1"})
    write_config_folder(pipeline, directory / f"{name}.config")
    return path
