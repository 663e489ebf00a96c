"""One view of every sampler's state, k-diffusion's: latents ``x``, noise level ``sigma`` and the
model's prediction of the clean latents, ``denoised``.

Diffusers schedulers keep their sample in one of three conventions, and models predict one of
four things; hooks should not have to know which. Karras et al. 2022 ("Elucidating the Design
Space of Diffusion-Based Generative Models", Eq. 1 and Table 1) write every diffusion model as a
denoiser ``D(x; sigma)`` on ``x = x0 + sigma * eps``; for rectified-flow models (Liu et al. 2022;
Esser et al. 2024, Eq. 2, as FLUX and SD3 use) the sample is ``x = (1 - sigma) * x0 + sigma * eps``.
In both, the sampler's ODE direction is ``(x - denoised) / sigma`` (k-diffusion's ``to_d``).

The three sample conventions (``SampleConvention``):
  ``"ve"``   k-diffusion-style schedulers (Euler, LMS, Heun, DPM2...; ``init_noise_sigma`` > 1)
             hold ``x = x0 + sigma * eps`` directly;
  ``"vp"``   DDPM-style schedulers (DDIM, PLMS, DPM++ 2M, UniPC, LCM) hold
             ``x_t = sqrt(a) * x0 + sqrt(1 - a) * eps`` (Ho et al. 2020, Eq. 4), with alpha-bar
             ``a = 1 / (1 + sigma^2)``, i.e. ``x_t = x / sqrt(1 + sigma^2)``;
  ``"flow"`` flow-matching schedulers hold the rectified-flow sample itself.

The predictions: ``epsilon``; ``v_prediction`` (Salimans & Ho 2022, Eq. 12, on the VP sample);
``sample`` (x0 itself); ``flow`` (velocity ``eps - x0``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

__all__ = ["FLOW_PREDICTIONS", "SampleConvention", "from_denoised", "noise_level", "sample_convention", "sample_scale",
           "to_denoised"]

SampleConvention = Literal["ve", "vp", "flow"]


#: Diffusers' names for a flow-velocity prediction (its multistep solvers say "flow_prediction").
FLOW_PREDICTIONS = ("flow", "flow_prediction")


def sample_convention(scheduler: Any) -> SampleConvention:
    """How ``scheduler`` holds its sample (see the module docstring). Flow-matching schedulers,
    and DPM-Solver/UniPC run on flow sigmas (``use_flow_sigmas``), hold the flow sample."""
    config = scheduler.config
    if config.get("prediction_type") in FLOW_PREDICTIONS or config.get("use_flow_sigmas") or \
            type(scheduler).__name__.startswith("FlowMatch"):
        return "flow"
    return "ve" if float(scheduler.init_noise_sigma) > 1.0 else "vp"


def _sigma_from_alpha_bar(scheduler: Any, timestep: Any) -> float:
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    return ((1.0 - alpha_bar) / alpha_bar) ** 0.5


def noise_level(scheduler: Any, timestep: Any) -> float:
    """The k-diffusion noise level ``sigma`` of the scheduler's current call at ``timestep``.

    Read from the scheduler's own sigma table where it keeps one (CPU copy: no device sync),
    at its step index, or where that is not set yet (DPM-Solver and UniPC set it in their first
    ``step``) at the index of ``timestep``; schedulers without a table (DDIM, PLMS, LCM) give
    ``sqrt((1 - a) / a)`` of the timestep's alpha-bar ``a``.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is None or len(sigmas) == 0:
        return _sigma_from_alpha_bar(scheduler, timestep)
    index = getattr(scheduler, "step_index", None)
    if index is None:
        index = getattr(scheduler, "begin_index", None)
    if index is None and hasattr(scheduler, "index_for_timestep"):
        index = scheduler.index_for_timestep(timestep)
    if index is None or index >= len(sigmas):
        return _sigma_from_alpha_bar(scheduler, timestep)
    return float(sigmas[index])


def sample_scale(convention: SampleConvention, sigma: float) -> float:
    """The factor from the scheduler's sample to k-diffusion's ``x`` (``x = scale * sample``)."""
    return (sigma**2 + 1.0) ** 0.5 if convention == "vp" else 1.0


def _vp_coefficients(sigma: float) -> tuple[float, float]:
    """sqrt(a) and sqrt(1 - a) of the VP sample with alpha-bar a = 1 / (1 + sigma^2)."""
    alpha = (1.0 / (sigma**2 + 1.0)) ** 0.5
    return alpha, sigma * alpha


def to_denoised(convention: SampleConvention, prediction: str, sample: torch.Tensor, output: torch.Tensor,
                sigma: float) -> torch.Tensor:
    """The clean latents x0 that a model ``output`` implies for the scheduler's ``sample``.

    Args:
        convention: how the scheduler holds ``sample``.
        prediction: what the model predicts: ``epsilon``, ``v_prediction``, ``sample`` or ``flow``.
        sample / output: (B, C, h, w) the scheduler's sample and the (guided) model output.
        sigma: the call's k-diffusion noise level.

    Returns:
        (B, C, h, w) x0, in latent units (the VAE's scaled latents).
    """
    if prediction == "sample":
        return output
    if convention == "flow" or prediction in FLOW_PREDICTIONS:
        return sample - sigma * output  # x = (1 - s) x0 + s eps and v = eps - x0
    if convention == "ve":  # the model sees x / sqrt(1 + s^2), the VP sample
        if prediction == "v_prediction":
            return sample / (sigma**2 + 1) - output * sigma / (sigma**2 + 1) ** 0.5
        return sample - sigma * output
    alpha, noise = _vp_coefficients(sigma)
    if prediction == "v_prediction":
        return alpha * sample - noise * output
    return (sample - noise * output) / alpha


def from_denoised(convention: SampleConvention, prediction: str, sample: torch.Tensor, denoised: torch.Tensor,
                  sigma: float) -> torch.Tensor:
    """The model output that ``to_denoised`` maps to ``denoised``: its exact inverse (sigma > 0)."""
    if prediction == "sample":
        return denoised
    if convention == "flow" or prediction in FLOW_PREDICTIONS:
        return (sample - denoised) / sigma
    if convention == "ve":
        if prediction == "v_prediction":
            return (sample / (sigma**2 + 1) - denoised) * (sigma**2 + 1) ** 0.5 / sigma
        return (sample - denoised) / sigma
    alpha, noise = _vp_coefficients(sigma)
    if prediction == "v_prediction":
        return (alpha * sample - denoised) / noise
    return (sample - alpha * denoised) / noise
