"""Family detection: the registry tells SD1.x, SD2.x, SDXL and their inpainting variants apart
from the keys, and says clearly when a file in the checkpoint folder is not a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modules.families.base import UnknownFamilyError
from modules.families.registry import FAMILIES, detect_diffusers_family, detect_family
from modules.families.stable_diffusion import UNET_IN_KEY
from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry, describe_checkpoint
from tests.conftest import CPU_FP32
from tests.tiny_models import FAMILIES as TINY_FAMILIES
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint

_PIPELINE_CLASS = {
    "sd15": "StableDiffusionPipeline",
    "sd15_inpaint": "StableDiffusionInpaintPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sdxl_inpaint": "StableDiffusionXLInpaintPipeline",
}


@pytest.fixture(scope="module")
def family_paths(tiny_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny single-file checkpoint per family (sd15/sdxl reused from the session folder)."""
    folder = tmp_path_factory.mktemp("families")
    paths = {}
    for family in TINY_FAMILIES:
        shared = tiny_checkpoint_dir / f"tiny-{family}.safetensors"
        paths[family] = shared if shared.is_file() else write_tiny_checkpoint(folder, family)
    return paths


@pytest.fixture(scope="module")
def diffusers_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder holding diffusers folders saved with ``save_pretrained``."""
    root = tmp_path_factory.mktemp("diffusers-root")
    for family, name in (("sd15", "my-sd15"), ("sd15_inpaint", "my-inpaint"), ("sdxl", "nested/my-xl"),
                         ("sd2", "my-sd2")):
        build_tiny_pipeline(family).save_pretrained(root / name)
    return root


# --------------------------------------------------------------------------- single files


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_single_file_family_is_detected(family_paths: dict[str, Path], family: str) -> None:
    path = family_paths[family]
    info = describe_checkpoint(path, path.stem)
    assert info.error is None
    assert info.family is not None and info.family.id == family
    assert info.family.pipeline_class == _PIPELINE_CLASS[family]
    assert info.family.is_inpaint == family.endswith("_inpaint")
    assert (info.family.base == "sdxl") == family.startswith("sdxl")
    assert info.config_dir == path.with_name(path.stem + ".config")
    assert not info.is_diffusers_folder and info.size == path.stat().st_size


def test_registry_lists_every_family(family_paths: dict[str, Path], tmp_path: Path) -> None:
    for family, path in family_paths.items():
        (tmp_path / f"{family}.safetensors").symlink_to(path)
    registry = CheckpointRegistry([tmp_path], HashCache(tmp_path / "hashes.json"))
    assert {info.name: info.family.id for info in registry.items if info.family} == {f: f for f in TINY_FAMILIES}


def _shapes(shapes: dict[str, tuple[int, ...]]) -> tuple:
    return (lambda key: key in shapes), shapes.get


_TO_K = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.attn2.to_k.weight"


@pytest.mark.parametrize(("block", "width", "in_channels", "expected"), [
    (1, 768, 4, "sd15"),
    (1, 768, 9, "sd15_inpaint"),
    (1, 1024, 4, "sd2"),
    (1, 1024, 9, "sd2_inpaint"),
    (4, 2048, 4, "sdxl"),
    (4, 2048, 9, "sdxl_inpaint"),
])
def test_unet_only_file_falls_back_on_cross_attention_width(block: int, width: int, in_channels: int,
                                                            expected: str) -> None:
    shapes = {UNET_IN_KEY: (320, in_channels, 3, 3), _TO_K.format(block): (320, width)}
    assert detect_family(*_shapes(shapes)) is FAMILIES[expected]


def test_unsupported_input_channels_are_named() -> None:
    shapes = {UNET_IN_KEY: (320, 8, 3, 3), "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)}
    with pytest.raises(UnknownFamilyError, match="8 input channels"):
        detect_family(*_shapes(shapes))


def test_sdxl_refiner_is_refused_by_name() -> None:
    shapes = {UNET_IN_KEY: (384, 4, 3, 3), "conditioner.embedders.1.model.ln_final.weight": (1280,)}
    with pytest.raises(UnknownFamilyError, match="refiner"):
        detect_family(*_shapes(shapes))


# --------------------------------------------------------------------------- not checkpoints


def _lora_file(path: Path) -> Path:
    save_file({
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 768),
    }, str(path))
    return path


def _vae_file(path: Path) -> Path:
    save_file({
        "encoder.conv_in.weight": torch.zeros(8, 3, 3, 3),
        "encoder.conv_in.bias": torch.zeros(8),
        "decoder.conv_out.weight": torch.zeros(3, 8, 3, 3),
        "quant_conv.weight": torch.zeros(8, 8, 1, 1),
        "post_quant_conv.weight": torch.zeros(4, 4, 1, 1),
    }, str(path))
    return path


@pytest.mark.parametrize("maker", [_lora_file, _vae_file], ids=["lora", "vae"])
def test_non_checkpoint_file_gets_a_clear_error(tmp_path: Path, maker) -> None:
    path = maker(tmp_path / "add-on.safetensors")
    info = describe_checkpoint(path, "add-on")
    assert info.family is None
    assert info.error is not None
    assert "no UNet found" in info.error and "LoRA/VAE" in info.error


def test_non_checkpoint_in_folder_is_listed_with_error_and_refused_on_load(tmp_path: Path,
                                                                           tiny_checkpoint_dir: Path) -> None:
    _lora_file(tmp_path / "my-lora.safetensors")
    shutil.copy(tiny_checkpoint_dir / "tiny-sd15.safetensors", tmp_path / "good.safetensors")
    registry = CheckpointRegistry([tmp_path], HashCache(tmp_path / "hashes.json"))
    by_name = {info.name: info for info in registry.items}
    assert set(by_name) == {"my-lora", "good"}
    assert by_name["my-lora"].error and "no UNet found" in by_name["my-lora"].error
    assert by_name["good"].error is None and by_name["good"].family.id == "sd15"
    assert registry.default().name == "good"  # the LoRA is never picked as the default model
    with pytest.raises(ModelFileError) as caught:
        ModelManager(registry, CPU_FP32).get("my-lora")
    assert caught.value.path == by_name["my-lora"].path and "no UNet found" in str(caught.value)


# --------------------------------------------------------------------------- diffusers folders


@pytest.mark.parametrize(("name", "expected"), [("my-sd15", "sd15"), ("my-inpaint", "sd15_inpaint"),
                                                ("nested/my-xl", "sdxl"), ("my-sd2", "sd2")])
def test_diffusers_folder_family(diffusers_root: Path, name: str, expected: str) -> None:
    assert detect_diffusers_family(diffusers_root / name).id == expected


def test_registry_lists_diffusers_folders(diffusers_root: Path, tmp_path: Path) -> None:
    registry = CheckpointRegistry([diffusers_root], HashCache(tmp_path / "hashes.json"))
    by_name = {info.name: info for info in registry.items}
    # The folders themselves, not the weight files inside them.
    assert set(by_name) == {"my-sd15", "my-inpaint", "nested/my-xl", "my-sd2"}
    for name, expected in (("my-sd15", "sd15"), ("my-inpaint", "sd15_inpaint"), ("nested/my-xl", "sdxl")):
        info = by_name[name]
        assert info.is_diffusers_folder and info.error is None
        assert info.family is not None and info.family.id == expected
        assert info.path == diffusers_root / name and info.size > 0
        assert registry.short_hash(info) is None
        assert info.title() == Path(name).name
    assert registry.find("my-xl").path == diffusers_root / "nested/my-xl"


def test_diffusers_folder_loads_through_the_manager(diffusers_root: Path, tmp_path: Path) -> None:
    registry = CheckpointRegistry([diffusers_root], HashCache(tmp_path / "hashes.json"))
    model = ModelManager(registry, CPU_FP32).get("my-sd15")
    assert model.family.id == "sd15" and model.short_hash is None
    assert type(model.pipeline).__name__ == "StableDiffusionPipeline"
    assert tuple(model.pipeline.unet.config.block_out_channels) == (32, 64)
    assert model.pipeline.tokenizer is not None and len(model.pipeline.tokenizer) == 49408


def test_unreadable_diffusers_folder_is_listed_with_error(tmp_path: Path) -> None:
    folder = tmp_path / "root" / "half-downloaded"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    registry = CheckpointRegistry([tmp_path / "root"], HashCache(tmp_path / "hashes.json"))
    [info] = registry.items
    assert info.is_diffusers_folder and info.family is None
    assert info.error and "unreadable diffusers folder" in info.error
