"""Per-step hooks: order, step counts, replacements taking effect, failures isolated."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.generation.vae import decode_latents, to_pil_images
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook, StepParams


class Recorder(StepHook):
    def __init__(self, name: str, log: list) -> None:
        self.name = name
        self.log = log

    def before_step(self, step: StepParams) -> None:
        self.log.append((self.name, "before_step", step.step, step.call_index))

    def after_unet(self, step: StepParams, noise_pred: torch.Tensor) -> None:
        self.log.append((self.name, "after_unet", step.step, step.call_index))

    def after_step(self, step: StepParams, latents: torch.Tensor) -> None:
        self.log.append((self.name, "after_step", step.step, step.call_index))


def _request(**fields: object) -> Txt2ImgRequest:
    base = {"prompt": "a blue square", "width": 64, "height": 64, "num_inference_steps": 4, "seed": 3,
            "sampler_name": "Euler"}
    base.update(fields)
    return Txt2ImgRequest(**base)


def _run(model: LoadedModel, request: Txt2ImgRequest, hooks: list[StepHook]):
    return run_txt2img(model, Job(request, hooks=hooks))


def _array(result) -> np.ndarray:
    return np.stack([np.asarray(image) for image in result.images])


def test_hooks_fire_in_order_once_per_step(sd15_model: LoadedModel) -> None:
    log: list = []
    _run(sd15_model, _request(), [Recorder("a", log), Recorder("b", log)])
    expected = [
        (name, method, step, 0)
        for step in range(4)
        for method in ("before_step", "after_unet", "after_step")
        for name in ("a", "b")
    ]
    assert log == expected


def test_second_order_sampler_reports_call_index(sd15_model: LoadedModel) -> None:
    log: list = []
    _run(sd15_model, _request(sampler_name="Heun", num_inference_steps=3), [Recorder("a", log)])
    calls = [(step, call) for _, method, step, call in log if method == "before_step"]
    # Heun: two UNet calls per step, the last step is a single Euler call.
    assert calls == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]


def test_before_step_replacement_takes_effect(sd15_model: LoadedModel) -> None:
    class NoGuidance(StepHook):
        def before_step(self, step: StepParams) -> StepParams:
            return dataclasses.replace(step, guidance_scale=1.0)

    hooked = _array(_run(sd15_model, _request(guidance_scale=7.0), [NoGuidance()]))
    plain_cfg1 = _array(_run(sd15_model, _request(guidance_scale=1.0), []))
    plain_cfg7 = _array(_run(sd15_model, _request(guidance_scale=7.0), []))
    assert np.array_equal(hooked, plain_cfg1)
    assert not np.array_equal(hooked, plain_cfg7)


def test_after_step_replacement_takes_effect(sd15_model: LoadedModel) -> None:
    fixed = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    class ReplaceLast(StepHook):
        def after_step(self, step: StepParams, latents: torch.Tensor) -> torch.Tensor | None:
            return fixed.clone() if step.step == step.total_steps - 1 else None

    result = _run(sd15_model, _request(), [ReplaceLast()])
    expected = to_pil_images(decode_latents(sd15_model.pipeline.vae, fixed))[0]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))


def test_after_unet_replacement_takes_effect(sd15_model: LoadedModel) -> None:
    class ZeroNoise(StepHook):
        def after_unet(self, step: StepParams, noise_pred: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(noise_pred)

    zeroed = _array(_run(sd15_model, _request(), [ZeroNoise()]))
    plain = _array(_run(sd15_model, _request(), []))
    assert not np.array_equal(zeroed, plain)


def test_failing_hook_is_disabled_and_the_job_completes(sd15_model: LoadedModel) -> None:
    log: list = []

    class Broken(StepHook):
        name = "broken-script"
        calls = 0

        def before_step(self, step: StepParams) -> None:
            Broken.calls += 1
            if step.step == 1:
                raise RuntimeError("boom")

    class WrongType(StepHook):
        name = "wrong-type"

        def after_step(self, step: StepParams, latents: torch.Tensor) -> str:
            return "not a tensor"

    result = _run(sd15_model, _request(), [Broken(), WrongType(), Recorder("ok", log)])
    assert len(result.images) == 1
    assert Broken.calls == 2  # step 0, then the failing step 1; never again
    assert any(e.startswith("broken-script: before_step failed: boom") for e in result.hook_errors)
    assert any(e.startswith("wrong-type: after_step failed") for e in result.hook_errors)
    assert sum(1 for entry in log if entry[1] == "after_step") == 4
    assert np.array_equal(_array(result), _array(_run(sd15_model, _request(), [])))
