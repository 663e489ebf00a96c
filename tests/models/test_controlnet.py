"""ControlNet files as users keep them in ``models/ControlNet``: a diffusers folder, a single
file in the original layout, and a single file in diffusers key names (SD1.x and SDXL), all
tiny random-weight ControlNets made from the tiny UNets and loaded through the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.models.controlnet import ControlNetLibrary, UnknownControlNetError
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.ldm_export import controlnet_to_ldm
from modules.models.loader import LoadedModel
from tests.tiny_controlnet import tiny_controlnet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def controlnet_root(sd15_model: LoadedModel, sdxl_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory,
                    ) -> Path:
    root = tmp_path_factory.mktemp("ControlNet")
    sd15 = tiny_controlnet(sd15_model.pipeline.unet, seed=1)
    sd15.save_pretrained(root / "tiny-canny-sd15", safe_serialization=True)
    save_file(controlnet_to_ldm(sd15.state_dict(), sd15.config), root / "control_tiny_sd15_canny.safetensors")
    sdxl = tiny_controlnet(sdxl_model.pipeline.unet, seed=2)
    save_file(sdxl.state_dict(), root / "tiny_xl_canny.safetensors")  # diffusers keys, no config: SDXL's usual form
    save_file({"adapter.body.0.weight": torch.zeros(2, 2)}, root / "not_a_controlnet.safetensors")
    return root


def _residuals(model: Any, unet: Any, pooled: int | None = None) -> list[torch.Tensor]:
    """The ControlNet's residuals for one fixed random input shaped for ``unet``."""
    generator = torch.Generator().manual_seed(0)
    context = unet.config.cross_attention_dim
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    extra = {}
    if pooled is not None:
        time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
        extra = {"added_cond_kwargs": {"text_embeds": torch.randn(2, pooled, generator=generator),
                                       "time_ids": time_ids}}
    down, mid = model(sample, torch.tensor(10), encoder_hidden_states=torch.randn(2, 5, context, generator=generator),
                      controlnet_cond=torch.rand(2, 3, 64, 64, generator=generator), return_dict=False, **extra)
    return [*down, mid]


def test_every_form_is_listed_with_its_family(controlnet_root: Path, sdxl_model: LoadedModel) -> None:
    library = ControlNetLibrary([controlnet_root])
    assert library.names() == ["control_tiny_sd15_canny", "not_a_controlnet", "tiny-canny-sd15", "tiny_xl_canny"]
    assert library.find("tiny-canny-sd15").context_width == 32  # the tiny SD1 UNet's text width
    assert library.find("control_tiny_sd15_canny").context_width == 32  # read from the file's header alone
    assert library.find("tiny_xl_canny").context_width == sdxl_model.pipeline.unet.config.cross_attention_dim


def test_folder_is_loaded_once_and_kept(controlnet_root: Path) -> None:
    library = ControlNetLibrary([controlnet_root])
    model = library.load("tiny-canny-sd15", CPU, torch.float32, context_width=32)
    assert type(model).__name__ == "ControlNetModel" and not model.training
    assert library.load("tiny-canny-sd15", CPU, torch.float32) is model


def test_original_layout_single_file_computes_what_the_folder_does(controlnet_root: Path,
                                                                     sd15_model: LoadedModel) -> None:
    unet = sd15_model.pipeline.unet
    library = ControlNetLibrary([controlnet_root])
    with torch.no_grad():
        folder = _residuals(library.load("tiny-canny-sd15", CPU, torch.float32, context_width=32), unet)
        single = _residuals(library.load("control_tiny_sd15_canny", CPU, torch.float32, context_width=32), unet)
    assert len(single) == len(folder) == 5  # conv_in + 2 + downsampler + 1, then the middle block
    for ours, reference in zip(single, folder, strict=True):
        assert torch.equal(ours, reference)


def test_sdxl_single_file_in_diffusers_keys_computes_what_the_model_did(controlnet_root: Path,
                                                                          sdxl_model: LoadedModel) -> None:
    unet = sdxl_model.pipeline.unet
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    library = ControlNetLibrary([controlnet_root])
    loaded = library.load("tiny_xl_canny", CPU, torch.float32, context_width=unet.config.cross_attention_dim,
                          pooled_width=pooled)
    assert loaded.config.transformer_layers_per_block == [1, 2]  # SDXL's deeper second level, read off the keys
    with torch.no_grad():
        ours = _residuals(loaded, unet, pooled)
        reference_model = tiny_controlnet(unet)  # the architecture from_unet gives, with the file's weights
        reference_model.load_state_dict(load_file(controlnet_root / "tiny_xl_canny.safetensors"))
        reference = _residuals(reference_model, unet, pooled)
    for mine, theirs in zip(ours, reference, strict=True):
        assert torch.equal(mine, theirs)


def test_short_hash_is_cached_and_names_the_weights(controlnet_root: Path, tmp_path: Path) -> None:
    library = ControlNetLibrary([controlnet_root], HashCache(tmp_path / "cache.json"))
    folder_hash = library.short_hash("tiny-canny-sd15")
    file_hash = library.short_hash("tiny_xl_canny")
    assert len(folder_hash) == len(file_hash) == 10 and folder_hash != file_hash
    assert ControlNetLibrary([controlnet_root]).short_hash("tiny_xl_canny") == ""  # no cache: no hash


def test_errors_say_what_is_wrong(controlnet_root: Path) -> None:
    library = ControlNetLibrary([controlnet_root])
    with pytest.raises(UnknownControlNetError, match="available: control_tiny_sd15_canny, not_a_controlnet"):
        library.find("depth")
    with pytest.raises(ModelFileError, match="text conditioning"):
        library.load("tiny-canny-sd15", CPU, torch.float32, context_width=2048)
    with pytest.raises(ModelFileError, match="text conditioning"):  # an SDXL file on an SD1 checkpoint
        library.load("tiny_xl_canny", CPU, torch.float32, context_width=32)
    with pytest.raises(ModelFileError, match="is not a ControlNet"):
        library.load("not_a_controlnet", CPU, torch.float32)
