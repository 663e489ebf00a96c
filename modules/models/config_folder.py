"""Write the diffusers config folder that lets a single-file checkpoint load offline.

A checkpoint's own ``<stem>.config/`` folder wins over the shipped family configs (see
:mod:`modules.models.loader`); checkpoints whose shapes differ from the published models
(the demo model, the test fixtures) ship one beside their ``.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_config_folder"]


def write_config_folder(pipeline: Any, directory: Path) -> Path:
    """Write the configs (no weights) of a diffusers SD pipeline into ``directory``.

    Args:
        pipeline: A diffusers Stable Diffusion pipeline.
        directory: Target folder, created if missing.

    Returns:
        ``directory``, holding ``model_index.json``, ``scheduler/scheduler_config.json``
        and ``<component>/config.json`` for the UNet, VAE and text encoder(s).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipeline.save_config(directory)
    pipeline.scheduler.save_config(directory / "scheduler")
    for name in ("unet", "vae"):
        getattr(pipeline, name).save_config(directory / name)
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipeline, name, None)
        if encoder is not None:
            encoder.config.save_pretrained(directory / name)
    return directory
