"""A job's model patches (``txt2img.job_unet``): every UNet call of the job goes through them,
the hires pass included; a hook whose patches fail is disabled and its patches dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager, Placement
from modules.models.memory import MemoryPolicy
from modules.models.patches import ModelCall, ModelFunction, ModelPatches
from modules.models.registry import CheckpointRegistry
from modules.processing.generation.hires import HiresFix
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook
from tests.tiny_models import write_tiny_checkpoint

REQUEST = Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=3, seed=4,
                         sampler_name="Euler")


class Counting(StepHook):
    """Wraps every UNet call, records its batch size and scales the output by ``factor``."""

    def __init__(self, name: str, factor: float = 1.0) -> None:
        self.name, self.factor, self.calls = name, factor, []

    def patch_model(self, patches: ModelPatches) -> None:
        def wrapper(call: ModelCall, run: ModelFunction) -> torch.Tensor:
            self.calls.append(call.sample.shape[0])
            return run(call) * self.factor
        patches.add_model_wrapper(wrapper)
        patches.infotext[f"{self.name} patched"] = True


class Failing(Counting):
    """Adds a patch, then fails: the patch it added must not be used."""

    def patch_model(self, patches: ModelPatches) -> None:
        super().patch_model(patches)
        patches.add_forward_hook("no_such_block", lambda *args: None)


def test_every_unet_call_of_the_job_goes_through_the_patches_hires_pass_included(sd15_model: LoadedModel) -> None:
    hook = Counting("count")
    request = Txt2ImgRequest(**{**REQUEST.__dict__, "hires": HiresFix(scale=1.5, steps=2, denoising_strength=0.5)})
    result = run_txt2img(sd15_model, Job(request, hooks=[hook]))
    hires_steps = request.hires.steps_to_run(3)[1]
    assert hires_steps > 0 and result.hook_errors == [] and hook.calls == [2] * (3 + hires_steps)
    assert "count patched: True" in result.infotexts[0]


def test_a_hook_whose_patches_fail_is_disabled_and_its_patches_dropped(sd15_model: LoadedModel) -> None:
    plain = run_txt2img(sd15_model, Job(REQUEST))
    failing, kept = Failing("failing", factor=0.0), Counting("kept")
    result = run_txt2img(sd15_model, Job(REQUEST, hooks=[failing, kept]))
    assert len(result.hook_errors) == 1 and "failing: patch_model failed" in result.hook_errors[0]
    assert "no block 'no_such_block'" in result.hook_errors[0]
    assert failing.calls == [] and kept.calls == [2, 2, 2]
    assert "failing patched" not in result.infotexts[0] and "kept patched: True" in result.infotexts[0]
    assert result.images[0].tobytes() == plain.images[0].tobytes()


class FreeU(StepHook):
    name = "freeu"

    def patch_model(self, patches: ModelPatches) -> None:
        patches.enable_freeu(s1=0.9, s2=0.2, b1=1.5, b2=1.6)
        patches.add_model_wrapper(lambda call, run: run(call))


@pytest.fixture(scope="module")
def offload_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offload")
    write_tiny_checkpoint(root / "Stable-diffusion", "sd15")
    return root


def _offloaded(root: Path, memory: MemoryPolicy) -> ModelManager:
    registry = CheckpointRegistry([root / "Stable-diffusion"], HashCache(root / f"hashes-{memory.value}.json"))
    return ModelManager(registry, Placement(torch.device("cpu"), torch.float32, memory))


def test_patches_work_on_offloaded_models_and_make_the_same_image(offload_root: Path) -> None:
    """--medvram / --lowvram hooks (accelerate's, with the CPU as execution device) stay shared
    with the clone: the patched image is the same, and the shared UNet keeps no FreeU factor."""
    images = {}
    for memory in (MemoryPolicy.FULL, MemoryPolicy.MODEL_OFFLOAD, MemoryPolicy.SEQUENTIAL_OFFLOAD):
        model = _offloaded(offload_root, memory).get("tiny-sd15")
        result = run_txt2img(model, Job(REQUEST, hooks=[FreeU()]))
        assert result.hook_errors == [], memory
        assert all(getattr(block, "b1", None) is None for block in model.pipeline.unet.up_blocks)
        images[memory] = result.images[0].tobytes()
    assert len(set(images.values())) == 1
    assert images[MemoryPolicy.FULL] != run_txt2img(_offloaded(offload_root, MemoryPolicy.FULL).get("tiny-sd15"),
                                                    Job(REQUEST)).images[0].tobytes()
