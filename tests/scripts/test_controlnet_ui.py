"""The ControlNet unit's form: with no ControlNet model installed, the Model dropdown says so and
where models go (relative to the data folder, never the server's own path), instead of offering
an empty list."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.extensions.api import ArgSpec
from modules.extensions.job_scripts import tab_scripts
from modules.studio import Studio
from modules.ui.script_controls import component_for_spec


def _model_spec(studio: Studio, is_img2img: bool) -> ArgSpec:
    _, always_on = tab_scripts(studio.context.scripts, is_img2img)
    (script,) = [s for s in always_on if s.title() == "ControlNet"]
    return dict(script.ui(is_img2img)["unit_0"].fields)["model"]


@pytest.mark.parametrize("is_img2img", [False, True])
def test_no_model_installed_says_where_models_go(studio: Studio, data_dir: Path, is_img2img: bool) -> None:
    spec = _model_spec(studio, is_img2img)
    assert spec.choices == ("None",)
    folder = studio.context.paths.controlnet.relative_to(studio.context.paths.root).as_posix()
    assert folder == "models/ControlNet"
    assert "No ControlNet model installed" in spec.info and folder in spec.info
    assert str(data_dir) not in spec.info  # a shared server's visitors do not learn its paths
    # The form shows it under the dropdown, and script-info describes it.
    assert component_for_spec(spec, "cn_model").info == spec.info
    assert spec.describe()["info"] == spec.info


def test_an_installed_model_is_offered_without_the_message(studio: Studio, data_dir: Path) -> None:
    folder = data_dir / "models" / "ControlNet"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.zeros(1)}, str(folder / "my-canny.safetensors"))
    studio.context.controlnets.refresh()
    spec = _model_spec(studio, False)
    assert spec.choices == ("None", "my-canny") and spec.info == ""
    assert "info" not in spec.describe()
    assert not component_for_spec(spec, "cn_model").info
