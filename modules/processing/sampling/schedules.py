"""A1111's schedule types as noise-level (sigma) lists, computed in one place.

A schedule is what k-diffusion samplers consume: ``steps + 1`` noise levels, decreasing,
ending in 0 (KL Optimal ends at the model's smallest sigma instead, as A1111's does). Sigmas
are k-diffusion's: ``sigma(t) = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])`` of the
model's discrete training schedule, with timesteps and sigmas converted by interpolating
log-sigma linearly between neighbouring training timesteps (k-diffusion's ``DiscreteSchedule``).

Numpy only (no torch, no diffusers), so the formulas are testable on their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = ["DEFAULT_RHO", "SCHEDULE_TYPES", "NoiseLevels", "compute_sigmas"]

#: Schedule types in A1111's dropdown order (reference §1.1). "Automatic" means the sampler's own.
SCHEDULE_TYPES: tuple[str, ...] = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
                                   "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal",
                                   "DDIM", "Beta")

#: Karras et al. 2022 recommend rho = 7; A1111's Polyexponential default rho is 1.
KARRAS_RHO = 7.0
POLYEXPONENTIAL_RHO = 1.0
#: The rho each schedule type uses, as A1111's /sdapi/v1/schedulers lists it (-1: none).
DEFAULT_RHO: Mapping[str, float] = MappingProxyType({"Karras": KARRAS_RHO, "Polyexponential": POLYEXPONENTIAL_RHO})
#: Lee et al. 2024 ("Beta Sampling is All You Need", arXiv:2407.12173): alpha = beta = 0.6.
BETA_ALPHA = BETA_BETA = 0.6


@dataclass(frozen=True)
class NoiseLevels:
    """A model's discrete noise schedule: one sigma per training timestep (ascending)."""

    sigmas: np.ndarray

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: np.ndarray) -> NoiseLevels:
        alphas = np.asarray(alphas_cumprod, dtype=np.float64)
        return cls(np.sqrt((1.0 - alphas) / alphas))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def t_max(self) -> int:
        return len(self.sigmas) - 1

    def t_to_sigma(self, t: np.ndarray) -> np.ndarray:
        """Sigma at (fractional) timesteps ``t``: log-sigma interpolated linearly."""
        return np.exp(np.interp(np.asarray(t, dtype=np.float64), np.arange(len(self.sigmas)), np.log(self.sigmas)))

    def sigma_to_t(self, sigma: np.ndarray) -> np.ndarray:
        """Fractional timesteps of ``sigma`` (the inverse of ``t_to_sigma``; 0 maps to 0)."""
        log_sigma = np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10))
        return np.interp(log_sigma, np.log(self.sigmas), np.arange(len(self.sigmas)))


def _append_zero(sigmas: np.ndarray) -> np.ndarray:
    return np.append(np.asarray(sigmas, dtype=np.float64), 0.0)


def _uniform(n: int, levels: NoiseLevels) -> np.ndarray:
    # k-diffusion's default discretisation: n timesteps evenly over the whole training range.
    return _append_zero(levels.t_to_sigma(np.linspace(levels.t_max, 0, n)))


def _normal(n: int, levels: NoiseLevels) -> np.ndarray:
    # Evenly spaced timesteps from t(sigma_max) to t(sigma_min) inclusive; for a discrete model
    # that is the whole range, so it equals Uniform (as in A1111).
    start, end = levels.sigma_to_t([levels.sigma_max, levels.sigma_min])
    return _append_zero(levels.t_to_sigma(np.linspace(start, end, n)))


def _sgm_uniform(n: int, levels: NoiseLevels) -> np.ndarray:
    # Stability's sgm: n + 1 evenly spaced timesteps, the last (t_min) dropped for the final 0.
    start, end = levels.sigma_to_t([levels.sigma_max, levels.sigma_min])
    return _append_zero(levels.t_to_sigma(np.linspace(start, end, n + 1)[:-1]))


def _karras(n: int, levels: NoiseLevels, rho: float = KARRAS_RHO) -> np.ndarray:
    # Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5.
    ramp = np.linspace(0, 1, n)
    max_inv, min_inv = levels.sigma_max ** (1 / rho), levels.sigma_min ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def _polyexponential(n: int, levels: NoiseLevels, rho: float = POLYEXPONENTIAL_RHO) -> np.ndarray:
    # k-diffusion: log-sigma follows a polynomial ramp of degree rho (rho = 1 is Exponential).
    ramp = np.linspace(1, 0, n) ** rho
    log_min, log_max = math.log(levels.sigma_min), math.log(levels.sigma_max)
    return _append_zero(np.exp(ramp * (log_max - log_min) + log_min))


def _exponential(n: int, levels: NoiseLevels) -> np.ndarray:
    # Evenly spaced in log-sigma from sigma_max to sigma_min.
    return _append_zero(np.exp(np.linspace(math.log(levels.sigma_max), math.log(levels.sigma_min), n)))


def _kl_optimal(n: int, levels: NoiseLevels) -> np.ndarray:
    # Sabour et al. 2024, "Align Your Steps", the KL-optimal schedule for the ODE:
    # sigma_i = tan((1 - i/n) atan(sigma_max) + (i/n) atan(sigma_min)), i = 0..n. As in A1111 it
    # ends at sigma_min, not 0.
    fraction = np.arange(n + 1) / n
    return np.tan(fraction * math.atan(levels.sigma_min) + (1 - fraction) * math.atan(levels.sigma_max))


def _align_your_steps(n: int, published: Sequence[float]) -> np.ndarray:
    # Sabour et al. 2024 (arXiv:2404.14507): the family's published 10-step table, resampled to n
    # levels by interpolating log-sigma linearly over the table's normalised position (NVIDIA's
    # "how to" page), then 0.
    if not published:
        raise ValueError("Align Your Steps has no published schedule for this model family")
    table = np.log(np.asarray(published)[::-1])
    resampled = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(table)), table)
    return _append_zero(np.exp(resampled)[::-1])


def _simple(n: int, levels: NoiseLevels) -> np.ndarray:
    # Every (T/n)-th training sigma, counted down from the noisiest (ComfyUI's and A1111's "simple").
    stride = len(levels.sigmas) / n
    return _append_zero([levels.sigmas[-(1 + int(i * stride))] for i in range(n)])


def _ddim(n: int, levels: NoiseLevels) -> np.ndarray:
    # DDIM's uniform timesteps (Song et al. 2021): t = 1 + i * (T // n). Exactly n of them (A1111's
    # loop adds one more step when T is not a multiple of n).
    stride = max(len(levels.sigmas) // n, 1)
    timesteps = np.minimum(1 + stride * np.arange(n), levels.t_max)[::-1]
    return _append_zero(levels.sigmas[timesteps])


def _beta(n: int, levels: NoiseLevels) -> np.ndarray:
    # Lee et al. 2024: noise levels at the quantiles of a Beta(alpha, beta) distribution, spread
    # between sigma_min and sigma_max (A1111's and diffusers' use_beta_sigmas).
    from scipy import stats  # imported here: scipy.stats takes a while, and only Beta needs it

    quantiles = stats.beta.ppf(1 - np.linspace(0, 1, n), BETA_ALPHA, BETA_BETA)
    return _append_zero(levels.sigma_min + quantiles * (levels.sigma_max - levels.sigma_min))


_FORMULAS: Mapping[str, Callable[[int, NoiseLevels], np.ndarray]] = MappingProxyType({
    "Uniform": _uniform, "Karras": _karras, "Exponential": _exponential, "Polyexponential": _polyexponential,
    "SGM Uniform": _sgm_uniform, "KL Optimal": _kl_optimal, "Simple": _simple, "Normal": _normal,
    "DDIM": _ddim, "Beta": _beta,
})


def compute_sigmas(schedule_type: str, steps: int, levels: NoiseLevels, ays_table: Sequence[float] = ()) -> np.ndarray:
    """The ``steps + 1`` noise levels (float64, decreasing) of a concrete schedule type.

    Args:
        schedule_type: one of ``SCHEDULE_TYPES`` except "Automatic" (the sampler picks that).
        steps: sampling steps, at least 1.
        levels: the model's training noise levels.
        ays_table: the model family's Align Your Steps table (``ModelFamily.align_your_steps``).

    Raises:
        ValueError: unknown schedule type or fewer than 1 step.
    """
    if steps < 1:
        raise ValueError(f"a schedule needs at least 1 step, got {steps}")
    if schedule_type == "Align Your Steps":
        return _align_your_steps(steps, ays_table)
    formula = _FORMULAS.get(schedule_type)
    if formula is None:
        raise ValueError(f"no sigma formula for schedule type {schedule_type!r}")
    return formula(steps, levels)
