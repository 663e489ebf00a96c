"""Shared fixtures: tiny random-weight checkpoints written to disk and loaded through the
real registry and loader, so every test exercises the same path a user's checkpoint takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Importing any `modules` package first sets the offline switches for diffusers/transformers.
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager, Placement
from modules.models.registry import CheckpointRegistry
from tests.tiny_models import write_tiny_checkpoint

torch.set_num_threads(2)

CPU_FP32 = Placement(torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder holding tiny SD1.x and SDXL checkpoints (with their config folders)."""
    folder = tmp_path_factory.mktemp("Stable-diffusion")
    write_tiny_checkpoint(folder, "sd15")
    write_tiny_checkpoint(folder, "sdxl")
    return folder


@pytest.fixture(scope="session")
def tiny_registry(tiny_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CheckpointRegistry:
    cache = tmp_path_factory.mktemp("cache") / "hashes.json"
    return CheckpointRegistry([tiny_checkpoint_dir], HashCache(cache))


@pytest.fixture(scope="session")
def tiny_manager(tiny_registry: CheckpointRegistry) -> ModelManager:
    return ModelManager(tiny_registry, CPU_FP32, keep_loaded=2)


@pytest.fixture(scope="session")
def sd15_model(tiny_manager: ModelManager) -> LoadedModel:
    return tiny_manager.get("tiny-sd15")


@pytest.fixture(scope="session")
def sdxl_model(tiny_manager: ModelManager) -> LoadedModel:
    return tiny_manager.get("tiny-sdxl")


@pytest.fixture
def outputs_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "outputs"
