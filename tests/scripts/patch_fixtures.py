"""What the FreeU and PAG tests share: a studio holding the tiny SD1.x and SDXL checkpoints,
and the state of a shared UNet that a per-job patch must leave as it was."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from modules.models.patches import ModelCall, attention_modules, run_unet
from modules.studio import Studio

#: Checkpoint name -> the request fields that choose it.
MODELS = {"tiny-sd15": {"override_settings": {"sd_model_checkpoint": "tiny-sd15"}},
          "tiny-sdxl": {"override_settings": {"sd_model_checkpoint": "tiny-sdxl"}}}


@pytest.fixture
def data_dir(tmp_path: Path, tiny_checkpoint_dir: Path) -> Path:
    """A data folder with both tiny checkpoints."""
    target = tmp_path / "models" / "Stable-diffusion"
    target.mkdir(parents=True)
    for item in tiny_checkpoint_dir.glob("tiny-*"):
        (shutil.copytree if item.is_dir() else shutil.copy)(item, target / item.name)
    return tmp_path


def shared_unet(studio: Studio, name: str) -> Any:
    return studio.context.models.get(name).pipeline.unet


def unet_state(unet: Any) -> dict[str, Any]:
    """Everything a patch could leave on the shared UNet, and its output on a fixed call."""
    generator = torch.Generator().manual_seed(1)
    call = ModelCall(torch.randn(2, 4, 8, 8, generator=generator), torch.tensor(300),
                     torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator), None, 2, True, 7.0)
    if unet.config.addition_embed_type == "text_time":
        call = ModelCall(call.sample, call.timestep, call.encoder_hidden_states,
                         {"text_embeds": torch.randn(2, unet.config.projection_class_embeddings_input_dim - 6 *
                                                     unet.config.addition_time_embed_dim, generator=generator),
                          "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64]] * 2, dtype=torch.float32)}, 2, True, 7.0)
    with torch.inference_mode():
        output = run_unet(unet, call)
    return {"processors": {name: id(module.processor) for name, module in attention_modules(unet)},
            "freeu": [getattr(block, attr, None) for block in unet.up_blocks for attr in ("b1", "b2", "s1", "s2")],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules()),
            "output": output.numpy().tobytes()}
