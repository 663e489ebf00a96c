"""--medvram / --lowvram: the flags choose a memory policy, the manager offloads the components
with accelerate's hooks, and the images do not change.

No GPU is needed: the hooks are attached with the CPU as execution device, which exercises the
same code path (hooks on the components, inputs sent to the execution device) without moving
anything. Whether VRAM is actually saved can only be measured on a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.cli import build_parser
from modules.models.hashing import HashCache
from modules.models.ldm_export import vae_to_ldm
from modules.models.manager import ModelManager, Placement, choose_placement
from modules.models.memory import MemoryPolicy, execution_device, memory_usage, model_bytes
from modules.models.registry import CheckpointRegistry
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from tests.tiny_models import build_tiny_pipeline, write_tiny_checkpoint

CPU = torch.device("cpu")
COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("memory")
    for family in ("sd15", "sd15_inpaint", "sdxl"):
        write_tiny_checkpoint(root / "Stable-diffusion", family)
    other = build_tiny_pipeline("sd15", seed=5).vae
    (root / "VAE").mkdir()
    save_file(vae_to_ldm(other.state_dict(), other.config, prefix=""), str(root / "VAE" / "other.safetensors"))
    return root


def _manager(root: Path, memory: MemoryPolicy) -> ModelManager:
    registry = CheckpointRegistry([root / "Stable-diffusion"], HashCache(root / f"hashes-{memory.value}.json"))
    return ModelManager(registry, Placement(CPU, torch.float32, memory), vae_roots=[root / "VAE"])


def _image(manager: ModelManager, checkpoint: str, vae: str = "None") -> np.ndarray:
    request = Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=2, seed=3,
                             batch_size=2, vae=vae)
    result = run_txt2img(manager.get(checkpoint, vae), Job(request))
    return np.concatenate([np.asarray(image) for image in result.images])


@pytest.mark.parametrize(("flags", "policy"), [
    ([], MemoryPolicy.FULL),
    (["--medvram"], MemoryPolicy.MODEL_OFFLOAD),
    (["--lowvram"], MemoryPolicy.SEQUENTIAL_OFFLOAD),
    (["--medvram", "--lowvram"], MemoryPolicy.SEQUENTIAL_OFFLOAD),  # A1111: --lowvram wins
])
def test_flags_choose_the_policy(flags: list[str], policy: MemoryPolicy) -> None:
    args = build_parser().parse_args(flags)
    assert MemoryPolicy.from_flags(args.medvram, args.lowvram) is policy
    # Choosing a GPU placement needs no GPU: the policy is kept for a CUDA device.
    assert choose_placement(device="cuda", memory=policy).memory is policy
    assert choose_placement(device="cuda", memory=policy).dtype == torch.float16


def test_offload_on_the_cpu_is_accepted_and_logged_as_no_effect(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modules.models.manager"):
        placement = choose_placement(device="cpu", memory=MemoryPolicy.MODEL_OFFLOAD)
    assert placement.memory is MemoryPolicy.FULL
    assert "--medvram has no effect" in caplog.text


@pytest.mark.parametrize("checkpoint", ["tiny-sd15", "tiny-sd15_inpaint", "tiny-sdxl"])
def test_offload_keeps_every_image_the_same(model_root: Path, checkpoint: str) -> None:
    expected = _image(_manager(model_root, MemoryPolicy.FULL), checkpoint)
    for memory in (MemoryPolicy.MODEL_OFFLOAD, MemoryPolicy.SEQUENTIAL_OFFLOAD):
        assert np.array_equal(_image(_manager(model_root, memory), checkpoint), expected), memory


def test_medvram_hooks_each_whole_component(model_root: Path) -> None:
    model = _manager(model_root, MemoryPolicy.MODEL_OFFLOAD).get("tiny-sdxl")
    assert model.offload.policy is MemoryPolicy.MODEL_OFFLOAD and model.device == CPU
    for name in COMPONENTS:
        component = getattr(model.pipeline, name)
        hooks = [type(hook).__name__ for hook in component._hf_hook.hooks]
        assert hooks == ["_OffloadOthers", "CpuOffload"], name
        # Whole-component offload: no submodule has a hook of its own.
        assert not any(hasattr(sub, "_hf_hook") for sub in list(component.modules())[1:]), name
        assert execution_device(component) == CPU


def test_lowvram_hooks_every_submodule(model_root: Path) -> None:
    model = _manager(model_root, MemoryPolicy.SEQUENTIAL_OFFLOAD).get("tiny-sdxl")
    for name in COMPONENTS:
        component = getattr(model.pipeline, name)
        assert hasattr(component, "_hf_hook"), name
        # The weights wait on the meta device; a CPU copy lives in the hooks' weights map.
        assert next(component.parameters()).device.type == "meta", name
        leaves = [m for m in component.modules() if not list(m.children()) and list(m.parameters(recurse=False))]
        assert leaves and all(hasattr(leaf, "_hf_hook") for leaf in leaves), name
        assert execution_device(component) == CPU


@pytest.mark.parametrize("memory", [MemoryPolicy.MODEL_OFFLOAD, MemoryPolicy.SEQUENTIAL_OFFLOAD])
def test_a_swapped_vae_is_offloaded_too(model_root: Path, memory: MemoryPolicy) -> None:
    plain, offloaded = _manager(model_root, MemoryPolicy.FULL), _manager(model_root, memory)
    assert np.array_equal(_image(offloaded, "tiny-sd15", "other.safetensors"),
                          _image(plain, "tiny-sd15", "other.safetensors"))
    model = offloaded.get("tiny-sd15", "other.safetensors")
    assert hasattr(model.pipeline.vae, "_hf_hook") and model.offload.members["vae"] is model.pipeline.vae
    assert np.array_equal(_image(offloaded, "tiny-sd15"), _image(plain, "tiny-sd15"))
    assert offloaded.get("tiny-sd15", "None").pipeline.vae is model.builtin_vae


def test_memory_report_lists_loaded_models_and_reload_loads_the_current_one_again(
        tiny_registry: CheckpointRegistry) -> None:
    manager = ModelManager(tiny_registry, Placement(CPU, torch.float32), keep_loaded=2)
    assert manager.reload_current() is None  # nothing loaded: nothing to reload
    first = manager.get("tiny-sd15")
    usage = memory_usage([(m.name, m.pipeline, m.denoising_module.device) for m in manager.loaded])
    assert [(m["name"], m["device"]) for m in usage["models"]] == [("tiny-sd15", "cpu")]
    assert usage["models"][0]["bytes"] == model_bytes(first.pipeline) > 0
    assert usage["ram"]["total"] and usage["cuda"] == {"error": "no CUDA device"}
    again = manager.reload_current()
    assert again is not None and again is not first and again.info.path == first.info.path
    assert manager.loaded == [again]
    manager.unload_all()
    assert manager.loaded == []
