"""The UNet-residual hook that ControlNet units build on: a tiny random-weight ControlNet made
from the tiny UNet's config adds its residuals through ``StepHook.unet_residuals``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook, StepParams, UNetCall, UNetResiduals


class TinyControl(StepHook):
    """One control unit: the ControlNet runs only for steps in [start, end) of the pass."""

    name = "tiny-control"

    def __init__(self, controlnet: torch.nn.Module, weight: float, start: float = 0.0, end: float = 1.0) -> None:
        self.controlnet, self.weight, self.start, self.end = controlnet, weight, start, end
        self.calls = 0

    def unet_residuals(self, step: StepParams, call: UNetCall) -> UNetResiduals | None:
        if not self.start <= step.step / step.total_steps < self.end:
            return None
        self.calls += 1
        size = (call.sample.shape[-2] * 8, call.sample.shape[-1] * 8)
        hint = torch.linspace(0, 1, size[0] * size[1] * 3).reshape(1, 3, *size).repeat(call.sample.shape[0], 1, 1, 1)
        down, mid = self.controlnet(call.sample, call.timestep, encoder_hidden_states=call.encoder_hidden_states,
                                    controlnet_cond=hint.to(call.sample.dtype), conditioning_scale=self.weight,
                                    return_dict=False)
        return UNetResiduals(tuple(down), mid)


@pytest.fixture(scope="module")
def controlnet(sd15_model: LoadedModel) -> torch.nn.Module:
    from diffusers import ControlNetModel

    model = ControlNetModel.from_unet(sd15_model.pipeline.unet, conditioning_channels=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # from_unet zero-initialises the output convolutions; random values make it act
        for parameter in model.parameters():
            if not parameter.abs().sum():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model.eval()


def _pixels(sd15_model: LoadedModel, hooks: list[StepHook]) -> np.ndarray:
    request = Txt2ImgRequest(prompt="a cat", width=64, height=64, num_inference_steps=4, seed=7, sampler_name="Euler")
    result = run_txt2img(sd15_model, Job(request, hooks))
    assert result.hook_errors == []
    return np.asarray(result.images[0])


def test_weight_zero_is_bit_identical_and_weight_one_changes_the_image(sd15_model: LoadedModel,
                                                                       controlnet: torch.nn.Module) -> None:
    plain = _pixels(sd15_model, [])
    assert np.array_equal(plain, _pixels(sd15_model, [TinyControl(controlnet, 0.0)]))
    assert not np.array_equal(plain, _pixels(sd15_model, [TinyControl(controlnet, 1.0)]))


def test_outside_its_step_range_the_controlnet_is_not_called(sd15_model: LoadedModel,
                                                             controlnet: torch.nn.Module) -> None:
    early, late = TinyControl(controlnet, 1.0, 0.0, 0.5), TinyControl(controlnet, 1.0, 0.5, 1.0)
    _pixels(sd15_model, [early, late])
    assert (early.calls, late.calls) == (2, 2)  # 4 Euler steps: two each, and the two units add up


def test_residuals_of_two_units_add_up() -> None:
    a = UNetResiduals((torch.ones(1, 2, 4, 4),), torch.ones(1, 4, 2, 2))
    b = UNetResiduals((torch.full((1, 2, 4, 4), 2.0),), torch.full((1, 4, 2, 2), 3.0))
    total = a + b
    assert total.down[0].eq(3).all() and total.mid.eq(4).all()


def test_a_script_adds_residuals_through_the_public_api(sd15_model: LoadedModel, controlnet: torch.nn.Module) -> None:
    from modules.extensions.api import AlwaysVisible, Script
    from modules.extensions.api import UNetCall as ApiCall
    from modules.extensions.api import UNetResiduals as ApiResiduals
    from modules.extensions.runner import ScriptCall, run_job_hooks

    unit = TinyControl(controlnet, 1.0)

    class ControlScript(Script):
        def title(self) -> str:
            return "Control"

        def show(self, is_img2img: bool) -> object:
            return AlwaysVisible

        def unet_residuals(self, p, step: StepParams, call: ApiCall, **args) -> ApiResiduals | None:  # noqa: ANN001
            return unit.unet_residuals(step, call)

    request = Txt2ImgRequest(prompt="a cat", width=64, height=64, num_inference_steps=4, seed=7, sampler_name="Euler")
    result = run_job_hooks([ScriptCall(ControlScript(), {})], request,
                           lambda r, hooks: run_txt2img(sd15_model, Job(r, hooks)))
    assert result.hook_errors == [] and unit.calls == 4
    assert np.array_equal(np.asarray(result.images[0]), _pixels(sd15_model, [TinyControl(controlnet, 1.0)]))
