"""The loader refuses checkpoints that would only fail later, mid-generation."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from tests.conftest import CPU_FP32
from tests.tiny_models import write_tiny_checkpoint


def test_checkpoint_missing_weights_is_refused_by_name(tmp_path: Path) -> None:
    path = write_tiny_checkpoint(tmp_path, "sd15", name="partial")
    state = load_file(str(path))
    dropped = [k for k in state if k.startswith("model.diffusion_model.output_blocks.")]
    save_file({k: v for k, v in state.items() if k not in dropped}, str(path))
    manager = ModelManager(CheckpointRegistry([tmp_path], HashCache(tmp_path / "h.json")), CPU_FP32)
    with pytest.raises(ModelFileError) as caught:
        manager.get("partial")
    assert caught.value.kind == "incomplete"
    assert "partial.safetensors" in str(caught.value) and "SD1.x" in str(caught.value)
