"""ControlNet files: a tiny random-weight ControlNet saved as users' diffusers folders are,
found by name and loaded; wrong families and unsupported layouts are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.models.controlnet import ControlNetLibrary, UnknownControlNetError
from modules.models.files import ModelFileError
from modules.models.loader import LoadedModel


@pytest.fixture(scope="module")
def controlnet_root(sd15_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import ControlNetModel

    root = tmp_path_factory.mktemp("ControlNet")
    model = ControlNetModel.from_unet(sd15_model.pipeline.unet, conditioning_channels=3)
    model.save_pretrained(root / "tiny-canny-sd15", safe_serialization=True)
    (root / "control_v11p_sd15_canny.safetensors").write_bytes(b"not read yet")
    return root


def test_found_by_name_and_loaded_once(controlnet_root: Path) -> None:
    library = ControlNetLibrary([controlnet_root])
    assert library.names() == ["control_v11p_sd15_canny", "tiny-canny-sd15"]
    assert library.find("tiny-canny-sd15").context_width == 32  # the tiny UNet's text width
    model = library.load("tiny-canny-sd15", torch.device("cpu"), torch.float32, context_width=32)
    assert type(model).__name__ == "ControlNetModel" and not model.training
    assert library.load("tiny-canny-sd15", torch.device("cpu"), torch.float32) is model  # kept loaded


def test_errors_say_what_is_wrong(controlnet_root: Path) -> None:
    library = ControlNetLibrary([controlnet_root])
    with pytest.raises(UnknownControlNetError, match="available: control_v11p_sd15_canny, tiny-canny-sd15"):
        library.find("depth")
    with pytest.raises(ModelFileError, match="text conditioning"):
        library.load("tiny-canny-sd15", torch.device("cpu"), torch.float32, context_width=2048)
    with pytest.raises(ModelFileError, match="single-file ControlNets are not read yet"):
        library.load("control_v11p_sd15_canny", torch.device("cpu"), torch.float32)
