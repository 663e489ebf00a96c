"""ControlNet on an SDXL checkpoint, from a single ``.safetensors`` in diffusers key names (the
usual form of SDXL ControlNets): the unit acts through the real loader and the script hooks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import save_file

from modules.models.loader import LoadedModel
from tests.scripts.test_controlnet import _unit
from tests.tiny_controlnet import tiny_controlnet

MODEL = "tiny_xl_canny"


@pytest.fixture
def data_dir(tmp_path: Path, tiny_checkpoint_dir: Path, sdxl_model: LoadedModel) -> Path:
    """A data folder whose only checkpoint is the tiny SDXL one, with a single-file SDXL ControlNet."""
    target = tmp_path / "models" / "Stable-diffusion"
    target.mkdir(parents=True)
    for item in tiny_checkpoint_dir.glob("tiny-sdxl*"):
        (shutil.copytree if item.is_dir() else shutil.copy)(item, target / item.name)
    controlnets = tmp_path / "models" / "ControlNet"
    controlnets.mkdir(parents=True)
    save_file(tiny_controlnet(sdxl_model.pipeline.unet, seed=3).state_dict(), controlnets / f"{MODEL}.safetensors")
    return tmp_path


def test_sdxl_unit_weight_zero_is_plain_and_weight_one_changes_the_image(generate: Callable) -> None:
    plain = generate()
    assert "Model: tiny-sdxl" in plain.infotexts[0]  # the SDXL checkpoint made it

    def run(**fields: object) -> bytes:
        result = generate(alwayson_scripts={"ControlNet": {"args": [_unit(model=MODEL, **fields)]}})
        assert result.hook_errors == []
        return result.images[0].tobytes()

    assert run(weight=0.0) == plain.images[0].tobytes()
    assert run(weight=1.0) != plain.images[0].tobytes()
    assert run(control_mode="ControlNet is more important") != run(weight=1.0)
