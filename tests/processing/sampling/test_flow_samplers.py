"""Flow-model samplers: A1111 names on diffusers' flow schedulers with FLUX's resolution shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from modules.processing.sampling.flow_samplers import (
    FLOW_SAMPLERS,
    UnknownFlowSamplerError,
    flow_scheduler,
    flow_shift,
    resolve_flow_sampler,
)

#: FLUX.1-dev's scheduler_config.json; schnell's differs in a fixed shift of 1 and no dynamic shifting.
DEV = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
       "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
SCHNELL = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
TOKENS_1024 = (1024 // 16) ** 2


def test_the_shift_follows_the_image_size_for_dev_and_is_fixed_for_schnell() -> None:
    assert flow_shift(DEV, 256) == pytest.approx(math.exp(0.5))
    assert flow_shift(DEV, TOKENS_1024) == pytest.approx(math.exp(1.15))
    assert flow_shift(DEV, 256) < flow_shift(DEV, 1024) < flow_shift(DEV, TOKENS_1024)
    assert flow_shift(SCHNELL, TOKENS_1024) == 1.0


def test_euler_gives_the_flux_pipelines_own_timesteps() -> None:
    # FluxPipeline: its scheduler from the model's config, sigmas linspace(1, 1/n, n) and mu.
    reference = FlowMatchEulerDiscreteScheduler.from_config(DEV)
    mu = 0.5 + (1.15 - 0.5) * (TOKENS_1024 - 256) / (4096 - 256)
    reference.set_timesteps(sigmas=np.linspace(1.0, 1 / 28, 28).tolist(), mu=mu)
    ours = flow_scheduler(resolve_flow_sampler("Euler"), DEV, 28, TOKENS_1024, "cpu")
    assert torch.allclose(ours.sigmas, reference.sigmas, atol=1e-6)
    assert torch.allclose(ours.timesteps, reference.timesteps, atol=1e-3)


@pytest.mark.parametrize("name", [spec.name for spec in FLOW_SAMPLERS])
def test_every_flow_sampler_runs_from_noise_to_clean_with_the_shift(name: str) -> None:
    spec = resolve_flow_sampler(name)
    small, large = (flow_scheduler(spec, DEV, 8, tokens, "cpu") for tokens in (256, TOKENS_1024))
    for scheduler in (small, large):
        sigmas = scheduler.sigmas.double().numpy()
        assert sigmas[0] == pytest.approx(1.0, abs=0.02) and sigmas[-1] == pytest.approx(0.0, abs=1e-6)
        assert np.all(np.diff(sigmas) <= 0)
    # A larger image stays longer at high noise.
    assert float(large.sigmas[len(large.sigmas) // 2]) > float(small.sigmas[len(small.sigmas) // 2])


def test_a_sampler_without_a_flow_form_is_refused_by_name() -> None:
    with pytest.raises(UnknownFlowSamplerError, match="DPM2 a.*Euler, Euler a, Heun"):
        resolve_flow_sampler("DPM2 a")
