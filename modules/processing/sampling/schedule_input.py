"""Hand a computed schedule (``schedules.py``) to a diffusers scheduler.

Three ways, one per ``SamplerSpec.schedule_input``:

* "sigmas": ``set_timesteps(sigmas=...)`` (EulerDiscreteScheduler) takes the list itself.
* "timesteps": ``set_timesteps(timesteps=...)`` (HeunDiscreteScheduler) takes the list's
  fractional timesteps and interpolates the sigmas back (it always ends the list in 0).
* "table": schedulers whose ``set_timesteps`` accepts neither but keeps exactly one sigma per
  step plus the last (``sigmas``) and one timestep per step (``timesteps``): Euler a, LMS, the
  DPM-Solver++ family, UniPC. Their steps read only those two tensors, which is how their own
  ``use_karras_sigmas`` works; ``set_timesteps`` builds them (and resets the solver state) and
  we replace them with ours. The layout is checked first, so a diffusers release that stores
  them differently fails loudly instead of sampling a wrong schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from modules.processing.sampling.schedules import NoiseLevels, compute_sigmas

__all__ = ["noise_levels", "set_computed_schedule"]


def noise_levels(scheduler: Any) -> NoiseLevels:
    """The training noise levels of a diffusers scheduler (from its ``alphas_cumprod``)."""
    return NoiseLevels.from_alphas_cumprod(scheduler.alphas_cumprod.double().cpu().numpy())


def set_computed_schedule(scheduler: Any, how: str, schedule_type: str, steps: int, device: Any,
                          ays_table: Sequence[float] = ()) -> np.ndarray:
    """Set ``scheduler``'s timesteps to the schedule type's sigmas; returns those sigmas.

    Raises:
        RuntimeError: a "table" scheduler does not hold one sigma per step (diffusers changed).
    """
    levels = noise_levels(scheduler)
    sigmas = compute_sigmas(schedule_type, steps, levels, ays_table)
    timesteps = levels.sigma_to_t(sigmas[:-1])
    if how == "sigmas":
        scheduler.set_timesteps(sigmas=sigmas.tolist(), device=device)
    elif how == "timesteps":
        scheduler.set_timesteps(timesteps=timesteps.tolist(), device=device)
    elif how == "table":
        scheduler.set_timesteps(steps, device=device)
        _replace_table(scheduler, sigmas, timesteps)
    else:
        raise ValueError(f"unknown schedule input {how!r}")
    return sigmas


def _replace_table(scheduler: Any, sigmas: np.ndarray, timesteps: np.ndarray) -> None:
    old_sigmas, old_timesteps = scheduler.sigmas, scheduler.timesteps
    if len(old_sigmas) != len(sigmas) or len(old_timesteps) != len(timesteps):
        raise RuntimeError(f"{type(scheduler).__name__} keeps {len(old_sigmas)} sigmas and {len(old_timesteps)} "
                           f"timesteps for {len(timesteps)} steps; expected one per step (diffusers changed)")
    if not old_timesteps.dtype.is_floating_point:
        timesteps = np.round(timesteps)  # integer-timestep solvers: as their own Karras path rounds
    scheduler.sigmas = torch.tensor(sigmas, dtype=old_sigmas.dtype, device=old_sigmas.device)
    scheduler.timesteps = torch.tensor(timesteps, dtype=old_timesteps.dtype, device=old_timesteps.device)
    # Our timesteps may repeat a value (integer rounding near t = 0); start counting at the first
    # step instead of looking the first timestep up.
    scheduler.set_begin_index(0)
