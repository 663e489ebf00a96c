"""Each schedule type's sigma formula, on SD1.5's own noise schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modules.families.sd1 import AYS_SD15
from modules.families.sdxl import AYS_SDXL
from modules.processing.sampling.schedules import SCHEDULE_TYPES, NoiseLevels, compute_sigmas

CONCRETE = [s for s in SCHEDULE_TYPES if s != "Automatic"]


@pytest.fixture(scope="module")
def levels() -> NoiseLevels:
    # SD1.x: "scaled_linear" betas from 0.00085 to 0.012 over 1000 timesteps.
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    return NoiseLevels.from_alphas_cumprod(np.cumprod(1.0 - betas))


def test_sd15_noise_range_is_the_known_one(levels: NoiseLevels) -> None:
    assert levels.sigma_max == pytest.approx(14.6146, abs=1e-3)
    assert levels.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert levels.sigma_to_t(levels.t_to_sigma([0, 250.5, 999])) == pytest.approx([0, 250.5, 999])


def test_a1111_lists_twelve_schedule_types() -> None:
    assert SCHEDULE_TYPES == ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                              "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM", "Beta")


@pytest.mark.parametrize("steps", [1, 2, 7, 20])
@pytest.mark.parametrize("schedule", CONCRETE)
def test_every_schedule_has_steps_plus_one_decreasing_levels(levels: NoiseLevels, schedule: str,
                                                             steps: int) -> None:
    sigmas = compute_sigmas(schedule, steps, levels, AYS_SD15)
    assert sigmas.shape == (steps + 1,)
    assert np.all(np.isfinite(sigmas))
    assert np.all(np.diff(sigmas) < 0), sigmas
    # k-diffusion ends a schedule in 0; A1111's KL Optimal ends at the smallest noise level.
    assert sigmas[-1] == (pytest.approx(levels.sigma_min) if schedule == "KL Optimal" else 0.0)


@pytest.mark.parametrize("schedule", ["Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform",
                                      "KL Optimal", "Simple", "Normal", "Beta"])
def test_schedules_start_at_the_models_largest_noise(levels: NoiseLevels, schedule: str) -> None:
    assert compute_sigmas(schedule, 10, levels)[0] == pytest.approx(levels.sigma_max, rel=1e-6)


def test_karras_follows_eq5_with_rho_7(levels: NoiseLevels) -> None:
    sigmas = compute_sigmas("Karras", 3, levels)
    middle = ((levels.sigma_max ** (1 / 7) + levels.sigma_min ** (1 / 7)) / 2) ** 7
    assert sigmas[:3] == pytest.approx([levels.sigma_max, middle, levels.sigma_min])
    assert middle == pytest.approx(1.2741, abs=1e-3)  # (1.4669 + 0.6035)^7 / 2^7, by hand


def test_exponential_is_geometric_and_polyexponential_rho_1_equals_it(levels: NoiseLevels) -> None:
    sigmas = compute_sigmas("Exponential", 8, levels)
    ratios = sigmas[1:-1] / sigmas[:-2]
    assert ratios == pytest.approx(np.full(7, (levels.sigma_min / levels.sigma_max) ** (1 / 7)))
    assert compute_sigmas("Polyexponential", 8, levels) == pytest.approx(sigmas)


def test_uniform_and_normal_space_timesteps_evenly_over_the_whole_range(levels: NoiseLevels) -> None:
    sigmas = compute_sigmas("Uniform", 4, levels)
    assert levels.sigma_to_t(sigmas[:-1]) == pytest.approx([999, 666, 333, 0], abs=1e-6)
    assert compute_sigmas("Normal", 4, levels) == pytest.approx(sigmas)


def test_sgm_uniform_drops_the_last_of_n_plus_one_timesteps(levels: NoiseLevels) -> None:
    sigmas = compute_sigmas("SGM Uniform", 3, levels)
    assert levels.sigma_to_t(sigmas[:-1]) == pytest.approx([999, 666, 333], abs=1e-6)


def test_simple_and_ddim_pick_training_sigmas(levels: NoiseLevels) -> None:
    assert compute_sigmas("Simple", 4, levels)[:-1] == pytest.approx(levels.sigmas[[999, 749, 499, 249]])
    assert compute_sigmas("DDIM", 4, levels)[:-1] == pytest.approx(levels.sigmas[[751, 501, 251, 1]])


def test_kl_optimal_is_linear_in_arctan_sigma(levels: NoiseLevels) -> None:
    angles = np.arctan(compute_sigmas("KL Optimal", 5, levels))
    assert angles == pytest.approx(np.linspace(math.atan(levels.sigma_max), math.atan(levels.sigma_min), 6))


def test_align_your_steps_uses_the_published_tables(levels: NoiseLevels) -> None:
    sd15 = compute_sigmas("Align Your Steps", 11, levels, AYS_SD15)
    assert sd15[:-1] == pytest.approx([14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029])
    sdxl = compute_sigmas("Align Your Steps", 11, levels, AYS_SDXL)
    assert sdxl[1] == pytest.approx(6.315) and sdxl[-2] == pytest.approx(0.029)
    # Other step counts: log-linear interpolation between the table's points.
    six = compute_sigmas("Align Your Steps", 6, levels, AYS_SD15)
    assert six[:-1] == pytest.approx([14.615, 3.861, 1.886, 0.963, 0.399, 0.029])
    twenty_one = compute_sigmas("Align Your Steps", 21, levels, AYS_SD15)
    assert twenty_one[1] == pytest.approx(math.sqrt(14.615 * 6.475))  # halfway in log-sigma
    with pytest.raises(ValueError, match="no published schedule"):  # a family without a table
        compute_sigmas("Align Your Steps", 10, levels)


def test_beta_puts_the_median_step_halfway_with_alpha_beta_0_6(levels: NoiseLevels) -> None:
    sigmas = compute_sigmas("Beta", 5, levels)
    assert sigmas[2] == pytest.approx((levels.sigma_max + levels.sigma_min) / 2)
    # Beta(0.6, 0.6) puts more steps near both ends than a uniform spread would.
    assert sigmas[0] - sigmas[1] < (levels.sigma_max - levels.sigma_min) / 4


def test_bad_schedule_requests_are_refused(levels: NoiseLevels) -> None:
    with pytest.raises(ValueError, match="no sigma formula"):
        compute_sigmas("Automatic", 10, levels)
    with pytest.raises(ValueError, match="at least 1 step"):
        compute_sigmas("Karras", 0, levels)
