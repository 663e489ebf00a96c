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


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("model:\n  params:\n    parameterization: \"v\"\n", "v_prediction"),
        ("model:\n  params:\n    linear_start: 0.00085\n", "epsilon"),
    ],
)
def test_a1111_yaml_beside_the_checkpoint_sets_the_prediction_type(tmp_path: Path, yaml_text: str,
                                                                   expected: str) -> None:
    write_tiny_checkpoint(tmp_path, "sd15", name="withyaml")
    (tmp_path / "withyaml.yaml").write_text(yaml_text, encoding="utf-8")
    manager = ModelManager(CheckpointRegistry([tmp_path], HashCache(tmp_path / "h.json")), CPU_FP32)
    assert manager.get("withyaml").scheduler_config["prediction_type"] == expected


def test_unreadable_yaml_is_a_typed_error_naming_it(tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path, "sd15", name="badyaml")
    (tmp_path / "badyaml.yaml").write_text("just a string", encoding="utf-8")
    manager = ModelManager(CheckpointRegistry([tmp_path], HashCache(tmp_path / "h.json")), CPU_FP32)
    with pytest.raises(ModelFileError, match="badyaml.yaml"):
        manager.get("badyaml")
