"""The loop's one view of every sampler: sigma always known, x0 (``denoised``) right for every
sample convention and prediction type, and an x0 edit turned back into the sampler's own terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.denoiser_view import from_denoised, noise_level, sample_convention, to_denoised
from modules.processing.sampling.hooks import StepHook, StepParams
from modules.processing.sampling.samplers import SAMPLERS, build_scheduler, resolve_sampler


@pytest.mark.parametrize("sampler", ["Euler", "DDIM", "DPM++ 2M", "UniPC", "Euler a"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_denoised_inverts_the_forward_process(sd15_model: LoadedModel, sampler: str, prediction: str) -> None:
    # Build the sample from a known x0 and noise in the scheduler's own convention; x0 must come back,
    # and from_denoised must give back the model output that made it.
    spec, schedule = resolve_sampler(sampler)
    scheduler = build_scheduler(spec, schedule, {**sd15_model.scheduler_config, "prediction_type": prediction})
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    t = scheduler.timesteps[3]
    sigma = noise_level(scheduler, t)
    a, s = (1.0 / (sigma**2 + 1)) ** 0.5, sigma * (1.0 / (sigma**2 + 1)) ** 0.5
    output = noise if prediction == "epsilon" else a * noise - s * x0
    convention = sample_convention(scheduler)
    sample = x0 + sigma * noise if convention == "ve" else a * x0 + s * noise
    denoised = to_denoised(convention, prediction, sample, output, sigma)
    assert torch.allclose(denoised, x0, atol=1e-4)
    assert torch.allclose(from_denoised(convention, prediction, sample, denoised, sigma), output, atol=1e-4)


def test_flow_models_use_the_rectified_flow_sample() -> None:
    x0, noise, sigma = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4), 0.7
    sample, velocity = (1 - sigma) * x0 + sigma * noise, noise - x0
    assert torch.allclose(to_denoised("flow", "flow", sample, velocity, sigma), x0, atol=1e-5)
    assert torch.allclose(from_denoised("flow", "flow", sample, x0, sigma), velocity, atol=1e-5)


class _Recorder(StepHook):
    """Sees every call's sigma and x0; ``keep`` returns a copy of x0, forcing the conversion back."""

    def __init__(self, keep: bool) -> None:
        self.keep, self.steps = keep, []

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> torch.Tensor | None:
        self.steps.append((step.sigma, float((step.x - denoised).abs().mean())))
        return denoised.clone() if self.keep else None


def _image(model: LoadedModel, sampler: str, hooks: list[StepHook]) -> np.ndarray:
    request = Txt2ImgRequest(prompt="a fox", width=64, height=64, num_inference_steps=4, seed=2,
                             guidance_scale=7.0, sampler_name=sampler)
    return np.asarray(run_txt2img(model, Job(request, hooks=hooks)).images[0], dtype=np.int16)


@pytest.mark.parametrize("sampler", [spec.name for spec in SAMPLERS])
def test_every_sampler_gives_hooks_sigma_and_x0_and_takes_x0_back(sd15_model: LoadedModel, sampler: str) -> None:
    plain = _image(sd15_model, sampler, [])
    watch, keep = _Recorder(keep=False), _Recorder(keep=True)
    assert np.array_equal(_image(sd15_model, sampler, [watch]), plain)  # looking changes nothing
    assert len(watch.steps) >= 4 and all(sigma > 0 for sigma, _ in watch.steps)
    sigmas = [sigma for sigma, _ in watch.steps]
    assert sigmas[0] > 1.0 and sigmas[-1] < sigmas[0]  # from noise down to detail, as k-diffusion's sigma
    # Handing x0 back unchanged goes through the exact inverse: the same image up to float rounding.
    assert np.abs(_image(sd15_model, sampler, [keep]) - plain).max() <= 1
