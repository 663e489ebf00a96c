"""ControlNet on an SDXL checkpoint, from a single ``.safetensors`` in diffusers key names (the
usual form of SDXL ControlNets): the unit acts through the real loader and the script hooks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import save_file

from modules.models.loader import LoadedModel
from modules.processing.errors import RequestValidationError
from modules.studio import Studio
from tests.scripts.test_controlnet import _unit
from tests.studio_fixtures import BASE
from tests.tiny_controlnet import tiny_controlnet

MODEL = "tiny_xl_canny"
SD15_MODEL = "tiny_sd15_canny"


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


def _units(*units: dict) -> dict:
    return {"alwayson_scripts": {"ControlNet": {"args": list(units)}}}


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


def test_a_controlnet_for_the_checkpoints_family_only_is_accepted(studio: Studio, data_dir: Path,
                                                                  tiny_checkpoint_dir: Path,
                                                                  sd15_model: LoadedModel) -> None:
    """Told from the files alone, before anything loads: an SDXL ControlNet has SDXL's size/crop
    embedding, the tiny SD1.x one has none (and a width of no real family)."""
    controlnets = data_dir / "models" / "ControlNet"
    save_file(tiny_controlnet(sd15_model.pipeline.unet).state_dict(), controlnets / f"{SD15_MODEL}.safetensors")
    studio.context.controlnets.refresh()
    with pytest.raises(RequestValidationError) as caught:
        studio.submit_txt2img({**BASE, **_units(_unit(model=SD15_MODEL))})
    assert caught.value.field == "alwayson_scripts.ControlNet.args[0].model"
    assert f"'{SD15_MODEL}' is made for SD1.x or SD2.x, but the checkpoint 'tiny-sdxl' is SDXL" in str(caught.value)
    # With both checkpoints, the one override_settings names decides.
    for item in tiny_checkpoint_dir.glob("tiny-sd15*"):
        (shutil.copytree if item.is_dir() else shutil.copy)(item, data_dir / "models" / "Stable-diffusion" / item.name)
    studio.refresh_checkpoints()
    with pytest.raises(RequestValidationError, match="'tiny_xl_canny' is made for SDXL, but the checkpoint "
                                                     "'tiny-sd15' is SD1.x"):
        studio.submit_txt2img({**BASE, "override_settings": {"sd_model_checkpoint": "tiny-sd15"},
                               **_units(_unit(model=MODEL))})
    job = studio.submit_txt2img({**BASE, "override_settings": {"sd_model_checkpoint": "tiny-sdxl"},
                                 **_units(_unit(model=MODEL))})
    status = studio.wait(job, timeout=300)
    assert status.state == "done" and "ControlNet 0" in status.result.infotexts[0]
