"""Loading checkpoints offline: tokenizer, pipeline, configs, prediction type and the manager's cache."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modules.models.files import ModelFileError
from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel, build_clip_tokenizer, detect_v_prediction
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from modules.paths import CONFIGS_DIR
from tests.conftest import CPU_FP32
from tests.tiny_models import write_tiny_checkpoint

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def copy_checkpoint(source: Path, dest_dir: Path, name: str, with_config: bool = True) -> Path:
    """Copies ``source`` (a tiny .safetensors) and, if asked, its "<stem>.config" folder as ``name``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{name}.safetensors"
    shutil.copyfile(source, target)
    if with_config:
        shutil.copytree(source.with_name(source.stem + ".config"), dest_dir / f"{name}.config")
    return target


def _registry(root: Path) -> CheckpointRegistry:
    return CheckpointRegistry([root], HashCache(root / ".hashes.json"))


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(("pad_token", "pad_id"), [("<|endoftext|>", 49407), ("!", 0)])
def test_clip_tokenizer_from_shipped_files(pad_token: str, pad_id: int) -> None:
    tokenizer = build_clip_tokenizer(pad_token) if pad_token == "!" else build_clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == pad_id
    ids = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids == CAT_IDS + [pad_id] * 70


def test_clip_tokenizer_truncates_long_prompts_to_77() -> None:
    tokenizer = build_clip_tokenizer()
    ids = tokenizer("cat " * 200, truncation=True, max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407


# --------------------------------------------------------------------------- loaded models


def test_loaded_sd15(sd15_model: LoadedModel, tiny_registry: CheckpointRegistry) -> None:
    assert sd15_model.family.id == "sd15" and sd15_model.name == "tiny-sd15"
    assert type(sd15_model.pipeline).__name__ == "StableDiffusionPipeline"
    assert getattr(sd15_model.pipeline, "safety_checker", None) is None
    assert sd15_model.scheduler_config["prediction_type"] == "epsilon"
    assert sd15_model.scheduler_config["num_train_timesteps"] == 1000
    assert sd15_model.short_hash == tiny_registry.short_hash(sd15_model.info)
    assert len(sd15_model.short_hash) == 10
    assert sd15_model.pipeline.unet.config.in_channels == 4
    assert sd15_model.device == torch.device("cpu") and sd15_model.dtype == torch.float32
    assert sd15_model.pipeline.unet.dtype == torch.float32
    assert sd15_model.pipeline.tokenizer.pad_token_id == 49407
    assert sd15_model.vae_scale_factor == 8


def test_loaded_sdxl(sdxl_model: LoadedModel, tiny_registry: CheckpointRegistry) -> None:
    assert sdxl_model.family.id == "sdxl" and sdxl_model.family.capabilities.micro_conditioning
    assert type(sdxl_model.pipeline).__name__ == "StableDiffusionXLPipeline"
    assert getattr(sdxl_model.pipeline, "safety_checker", None) is None
    assert "prediction_type" in sdxl_model.scheduler_config
    assert sdxl_model.short_hash == tiny_registry.short_hash(sdxl_model.info)
    assert sdxl_model.pipeline.unet.config.in_channels == 4
    assert sdxl_model.pipeline.text_encoder_2 is not None
    assert sdxl_model.pipeline.tokenizer.pad_token == "<|endoftext|>"
    assert sdxl_model.pipeline.tokenizer_2.pad_token == "!"
    assert sdxl_model.pipeline.tokenizer_2.pad_token_id == 0
    assert len(sdxl_model.pipeline.tokenizer_2) == 49408


def test_own_config_decides_the_unet_size(sd15_model: LoadedModel) -> None:
    own = json.loads((sd15_model.info.config_dir / "unet" / "config.json").read_text())
    shipped = json.loads((CONFIGS_DIR / "sd15" / "unet" / "config.json").read_text())
    assert own["block_out_channels"] != shipped["block_out_channels"]
    assert list(sd15_model.pipeline.unet.config.block_out_channels) == own["block_out_channels"] == [32, 64]
    assert sd15_model.pipeline.text_encoder.config.hidden_size == 32


def test_without_own_config_the_shipped_one_is_used_and_a_mismatch_is_a_typed_error(
        tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    path = copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", tmp_path, "orphan", with_config=False)
    registry = _registry(tmp_path)
    assert registry.find("orphan").config_dir is None
    with pytest.raises(ModelFileError) as caught:
        ModelManager(registry, CPU_FP32).get("orphan")
    assert caught.value.path == path
    assert "the sd15 configs" in caught.value.detail  # the shipped SD1.x config was the one tried
    assert str(CONFIGS_DIR) not in caught.value.public_message and str(tmp_path) not in caught.value.public_message


def test_sd2_keeps_its_own_prediction_type(tmp_path: Path) -> None:
    write_tiny_checkpoint(tmp_path, "sd2")
    model = ModelManager(_registry(tmp_path), CPU_FP32).get("tiny-sd2")
    assert model.family.id == "sd2"
    assert model.scheduler_config["prediction_type"] == "v_prediction"
    assert model.pipeline.scheduler.config.prediction_type == "v_prediction"
    assert model.pipeline.tokenizer.pad_token_id == 0  # OpenCLIP pads with "!"
    assert isinstance(detect_v_prediction(model.pipeline.unet), bool)


def test_v_pred_key_switches_to_v_prediction(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    source = tiny_checkpoint_dir / "tiny-sd15.safetensors"
    state = load_file(str(source))
    save_file({**state, "v_pred": torch.zeros(0)}, str(tmp_path / "vmodel.safetensors"))
    shutil.copytree(source.with_name("tiny-sd15.config"), tmp_path / "vmodel.config")
    model = ModelManager(_registry(tmp_path), CPU_FP32).get("vmodel")
    assert model.scheduler_config["prediction_type"] == "v_prediction"


def test_pickle_checkpoint_loads_only_with_allow_pickle(tmp_path: Path, tiny_checkpoint_dir: Path,
                                                        sd15_model: LoadedModel) -> None:
    source = tiny_checkpoint_dir / "tiny-sd15.safetensors"
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": load_file(str(source)), "global_step": 1}, path)
    shutil.copytree(source.with_name("tiny-sd15.config"), tmp_path / "legacy.config")
    registry = _registry(tmp_path)
    info = registry.find("legacy")
    assert info.error is None and info.family is None  # detected at load time

    with pytest.raises(ModelFileError) as caught:
        ModelManager(registry, CPU_FP32).get("legacy")
    assert caught.value.kind == "pickle_refused" and "--allow-pickle" in str(caught.value)

    model = ModelManager(registry, CPU_FP32, allow_pickle=True).get("legacy")
    assert model.family.id == "sd15"
    assert model.short_hash == registry.short_hash(info)
    reference = sd15_model.pipeline.unet.state_dict()
    for key, value in model.pipeline.unet.state_dict().items():
        assert torch.equal(value, reference[key]), key


# --------------------------------------------------------------------------- manager


def test_keep_loaded_1_unloads_the_previous_model(tiny_registry: CheckpointRegistry) -> None:
    manager = ModelManager(tiny_registry, CPU_FP32, keep_loaded=1)
    first = manager.get("tiny-sd15")
    assert manager.loaded == [first]
    assert manager.get("tiny-sd15") is first  # cached, not reloaded
    unet = weakref.ref(first.pipeline.unet)
    second = manager.get("tiny-sdxl")
    assert second.family.id == "sdxl"
    assert len(manager.loaded) == 1 and manager.loaded[0] is second
    assert all(model is not first for model in manager.loaded)
    del first
    gc.collect()
    assert unet() is None, "the unloaded model is still referenced somewhere"
    assert manager.get(None) is second  # no name: the current model


def test_keep_loaded_2_evicts_the_least_recently_used(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    for name in ("a", "b", "c"):
        copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", tmp_path, name)
    manager = ModelManager(_registry(tmp_path), CPU_FP32, keep_loaded=2)
    a = manager.get("a")
    manager.get("b")
    assert manager.get("a") is a
    manager.get("c")
    assert [model.info.name for model in manager.loaded] == ["a", "c"]


def test_failed_switch_keeps_the_current_model(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    copy_checkpoint(tiny_checkpoint_dir / "tiny-sd15.safetensors", tmp_path, "b-good")
    (tmp_path / "a-broken.safetensors").write_bytes(b"\0" * 7)
    manager = ModelManager(_registry(tmp_path), CPU_FP32, keep_loaded=1)
    good = manager.get("b-good")
    with pytest.raises(ModelFileError):
        manager.get("a-broken")
    assert manager.loaded == [good]
