"""A flow transformer (tiny random FLUX) through the one denoising loop: every flow sampler runs,
hooks see flow sigmas and x0, and Euler is the flow ODE's Euler step."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import FluxTransformer2DModel

from modules.families.flux.denoiser import FluxDenoiser
from modules.processing.prompts.conditioning import Conditioning
from modules.processing.sampling.denoise import DenoiseInputs, denoise
from modules.processing.sampling.flow_samplers import FLOW_SAMPLERS, flow_scheduler, resolve_flow_sampler
from modules.processing.sampling.hooks import HookDispatcher, StepHook, StepParams

DEV_SHIFT = {"use_dynamic_shifting": True}


@pytest.fixture(scope="module")
def denoiser() -> FluxDenoiser:
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=24, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
    return FluxDenoiser(transformer.eval(), distilled_guidance=3.5)


class _Watch(StepHook):
    def __init__(self, keep: bool = False) -> None:
        self.keep, self.sigmas = keep, []

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> torch.Tensor | None:
        self.sigmas.append(step.sigma)
        return denoised.clone() if self.keep else None


def _run(denoiser: FluxDenoiser, name: str, hooks: list[StepHook], steps: int = 4) -> torch.Tensor:
    scheduler = flow_scheduler(resolve_flow_sampler(name), DEV_SHIFT, steps, 4, "cpu")
    generator = torch.Generator().manual_seed(1)
    start = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    inputs = DenoiseInputs(unet=denoiser, scheduler=scheduler, latents=start,
                           cond=Conditioning(torch.ones(1, 7, 32) * 0.1, torch.ones(1, 24) * 0.2), uncond=None,
                           guidance_scale=1.0, num_steps=steps,
                           step_kwargs={"generator": generator}  # Euler a and LCM draw fresh noise from it
                           if "generator" in inspect.signature(scheduler.step).parameters else {})
    with torch.no_grad():
        return denoise(inputs, HookDispatcher(hooks), lambda: None, lambda step, latents: None)


@pytest.mark.parametrize("name", [spec.name for spec in FLOW_SAMPLERS])
def test_every_flow_sampler_runs_and_hooks_see_flow_sigmas(denoiser: FluxDenoiser, name: str) -> None:
    watch = _Watch()
    plain = _run(denoiser, name, [watch])
    assert plain.shape == (1, 16, 4, 4) and torch.isfinite(plain).all()
    assert watch.sigmas and all(0.0 < s <= 1.0 for s in watch.sigmas) and watch.sigmas[0] > watch.sigmas[-1]
    # x0 handed back unchanged goes through the exact inverse.
    assert torch.allclose(_run(denoiser, name, [_Watch(keep=True)]), plain, atol=1e-5)


def test_euler_is_the_flow_odes_euler_step(denoiser: FluxDenoiser) -> None:
    scheduler = flow_scheduler(resolve_flow_sampler("Euler"), DEV_SHIFT, 4, 4, "cpu")
    x = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    text, pooled = torch.ones(1, 7, 32) * 0.1, {"text_embeds": torch.ones(1, 24) * 0.2}
    with torch.no_grad():
        for index, t in enumerate(scheduler.timesteps):
            velocity = denoiser(x, t, text, added_cond_kwargs=pooled)[0]
            x = x + (scheduler.sigmas[index + 1] - scheduler.sigmas[index]) * velocity  # dx/ds = eps - x0
    assert torch.allclose(_run(denoiser, "Euler", []), x, atol=1e-5)
