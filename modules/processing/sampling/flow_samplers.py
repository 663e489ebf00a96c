"""A1111 sampler names on diffusers' schedulers for rectified-flow models (FLUX, SD3).

Flow models sample ``x = (1 - s) * x0 + s * eps`` from s = 1 to 0 (Liu et al. 2022; Esser et al.
2024). Only the samplers with a flow form make sense: Euler and Heun (the ODE itself), Euler a
(the stochastic variant: each step re-noises the x0 estimate to the next level), DPM++ 2M and
UniPC (their multistep solvers on flow sigmas), LCM. The others are refused by name.

**Resolution-dependent shift.** Larger images keep more signal at a given noise level, so their
schedule should spend more steps at high noise: ``s' = k * s / (1 + (k - 1) * s)`` (Esser et al.
2024, Sec. 5.3.2, Eq. 23). FLUX.1-dev takes ``k = exp(mu)`` with ``mu`` linear in the number of
image tokens, from 0.5 at 256 tokens to 1.15 at 4096 (its scheduler_config.json); schnell uses
``k = 1``. Every scheduler here gets that ``k`` as its static shift, which is the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["FLOW_SAMPLERS", "FlowSamplerSpec", "UnknownFlowSamplerError", "flow_scheduler", "flow_shift",
           "resolve_flow_sampler"]


@dataclass(frozen=True)
class FlowSamplerSpec:
    """One A1111 sampler name and the diffusers flow scheduler that implements it.

    ``shift_option`` is the config key of its static shift; ``takes_sigmas`` whether its
    ``set_timesteps`` takes our sigma list (FLUX's reference list ``linspace(1, 1/n, n)``).
    ``uses_ensd``: it draws fresh noise every step, so A1111's "Eta noise seed delta" applies;
    ``uses_eta`` is False for all (no flow sampler here takes an eta), as ``SamplerSpec`` has it.
    """

    name: str
    scheduler_class: str
    shift_option: str = "shift"
    takes_sigmas: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    uses_ensd: bool = False
    uses_eta: bool = False


def _spec(name: str, cls: str, **kwargs: Any) -> FlowSamplerSpec:
    options = MappingProxyType(dict(kwargs.pop("options", {})))
    return FlowSamplerSpec(name, cls, options=options, **kwargs)


_FLOW_SOLVER = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
FLOW_SAMPLERS: tuple[FlowSamplerSpec, ...] = (
    _spec("Euler", "FlowMatchEulerDiscreteScheduler"),
    _spec("Euler a", "FlowMatchEulerDiscreteScheduler", options={"stochastic_sampling": True}, uses_ensd=True),
    _spec("Heun", "FlowMatchHeunDiscreteScheduler", takes_sigmas=False),
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler", shift_option="flow_shift", takes_sigmas=False,
          options={**_FLOW_SOLVER, "algorithm_type": "dpmsolver++", "solver_order": 2}),
    _spec("UniPC", "UniPCMultistepScheduler", shift_option="flow_shift",
          options={**_FLOW_SOLVER, "solver_order": 2}),
    _spec("LCM", "FlowMatchLCMScheduler"),
)
_BY_NAME = MappingProxyType({spec.name.lower(): spec for spec in FLOW_SAMPLERS})


class UnknownFlowSamplerError(ValueError):
    """A sampler name with no flow form."""


def resolve_flow_sampler(name: str) -> FlowSamplerSpec:
    """The flow sampler of an A1111 name ("Euler", "DPM++ 2M" ...).

    Raises:
        UnknownFlowSamplerError: the sampler has no flow form (names the ones that do).
    """
    spec = _BY_NAME.get(name.strip().lower())
    if spec is None:
        known = ", ".join(s.name for s in FLOW_SAMPLERS)
        raise UnknownFlowSamplerError(f"sampler {name!r} does not run flow models; choose one of {known}")
    return spec


def flow_shift(scheduler_config: Mapping[str, Any], image_tokens: int) -> float:
    """The schedule shift k for an image of ``image_tokens`` packed tokens (module docstring).

    ``scheduler_config`` is the model's: ``use_dynamic_shifting`` with ``base_shift``/``max_shift`` at
    ``base_image_seq_len``/``max_image_seq_len`` tokens (FLUX.1-dev), else its fixed ``shift``.
    """
    if not scheduler_config.get("use_dynamic_shifting"):
        return float(scheduler_config.get("shift", 1.0))
    base_len = scheduler_config.get("base_image_seq_len", 256)
    max_len = scheduler_config.get("max_image_seq_len", 4096)
    base, top = scheduler_config.get("base_shift", 0.5), scheduler_config.get("max_shift", 1.15)
    mu = base + (top - base) * (image_tokens - base_len) / (max_len - base_len)
    return math.exp(mu)


def flow_scheduler(spec: FlowSamplerSpec, scheduler_config: Mapping[str, Any], steps: int, image_tokens: int,
                   device: Any, seeds: Sequence[int] = ()) -> Any:
    """A fresh flow scheduler for ``steps`` steps, its timesteps set with the image's shift.

    Args:
        spec: the sampler.
        scheduler_config: the model's flow-matching scheduler config (num_train_timesteps, shift...).
        steps: sampling steps.
        image_tokens: packed image tokens (FLUX: (H/16) * (W/16)).
        device: where the timesteps go.
        seeds: unused by these schedulers (their noise comes from the loop's generators).
    """
    import diffusers  # seconds to import; listing samplers needs none of it

    cls = getattr(diffusers, spec.scheduler_class)
    config = {"num_train_timesteps": scheduler_config.get("num_train_timesteps", 1000), **spec.options,
              spec.shift_option: flow_shift(scheduler_config, image_tokens)}
    scheduler = cls.from_config(config)
    if spec.takes_sigmas:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps), device=device)
    else:
        scheduler.set_timesteps(steps, device=device)
    return scheduler
