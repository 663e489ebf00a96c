"""Sampler registry: A1111 sampler and schedule-type names mapped onto diffusers schedulers.

A1111 1.9+ splits the *sampler* ("DPM++ 2M") from the *schedule type* ("Karras"); the old
combined names ("DPM++ 2M Karras") are still accepted as aliases. Each sampler is a typed
record; ``build_scheduler`` turns one plus a schedule type into a configured diffusers
scheduler for a model's own noise schedule (betas, prediction type).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from modules.processing.sampling.schedules import SCHEDULE_TYPES

__all__ = [
    "SCHEDULE_TYPES",
    "SAMPLERS",
    "SamplerSpec",
    "UnknownSamplerError",
    "build_scheduler",
    "concrete_schedule",
    "partial_schedule",
    "resolve_sampler",
    "schedule_choices",
    "supported_schedule_types",
    "timed_scheduler",
]

# How a sampler's diffusers scheduler takes a schedule (checked against diffusers by the tests):
#   "sigmas"      set_timesteps(sigmas=...) takes our sigma list;
#   "timesteps"   set_timesteps(timesteps=...) takes its (fractional) timesteps;
#   "table"       the scheduler keeps one sigma per step plus the last and one timestep per step,
#                 built by set_timesteps; ours replace those two tensors after it (schedule_input.py);
#   "sigma_flags" only config flags (use_karras_sigmas, ...) and timestep_spacing;
#   "spacing"     only timestep_spacing;
#   "own"         only the scheduler's own schedule (LCM ignores timestep_spacing).
_COMPUTED_INPUTS = ("sigmas", "timesteps", "table")

# The schedule types diffusers' config expresses natively, for the samplers that take no list.
# Each gives the same timesteps as schedules.py (Karras, Exponential and Beta use the same
# formulas on the same sigma range; Polyexponential's default rho 1 is Exponential); the tests
# compare them. "leading" spacing with offset 1 is DDIM's t = 1 + i * (T // n).
_NATIVE: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "Uniform": {"timestep_spacing": "linspace"},
        "Karras": {"timestep_spacing": "linspace", "use_karras_sigmas": True},
        "Exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
        "Polyexponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
        "SGM Uniform": {"timestep_spacing": "trailing"},
        "Simple": {"timestep_spacing": "trailing"},
        "Normal": {"timestep_spacing": "linspace"},
        "DDIM": {"timestep_spacing": "leading", "steps_offset": 1},
        "Beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
    }
)
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def _sigma_flags_of(schedule_type: str) -> set[str]:
    return set(_NATIVE[schedule_type]) & set(_SIGMA_FLAGS)
# With a computed list the config only decides ``init_noise_sigma``: "linspace" makes it the
# list's first sigma, as k-diffusion starts from noise * sigma_max.
_COMPUTED_CONFIG: Mapping[str, Any] = MappingProxyType({"timestep_spacing": "linspace"})


class UnknownSamplerError(ValueError):
    """The sampler or schedule-type name is not in the registry."""


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler and the diffusers scheduler that implements it."""

    name: str
    scheduler_class: str
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    default_schedule: str = "Uniform"
    #: True when the timestep samplers (DDIM, PLMS, UniPC, LCM) keep the model's own spacing
    #: for "Automatic", as A1111 does.
    keeps_model_spacing: bool = False
    uses_eta: bool = False
    #: Draws fresh noise at every step from the image generators, so A1111's "Eta noise seed
    #: delta" applies (its ``uses_ensd`` samplers: the ancestral ones).
    uses_ensd: bool = False
    #: Noise comes from a Brownian tree seeded per image instead of from the image generator.
    brownian_noise: bool = False
    #: How its scheduler takes a schedule (see ``_COMPUTED_INPUTS``; declared, so that validating a
    #: request needs no diffusers import; the tests check it against the installed diffusers).
    schedule_input: str = "table"

    @property
    def scheduler_cls(self) -> type:
        # Imported here: diffusers takes seconds to import, and listing samplers (the UI) needs none of it.
        import diffusers

        return getattr(diffusers, self.scheduler_class)


def _spec(name: str, cls: str, aliases: Sequence[str] = (), **kwargs: Any) -> SamplerSpec:
    options = MappingProxyType(dict(kwargs.pop("options", {})))
    return SamplerSpec(name, cls, options, tuple(aliases), **kwargs)


#: In A1111's dropdown order (reference §1.1). Options follow A1111's per-sampler defaults.
SAMPLERS: tuple[SamplerSpec, ...] = (
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler", ["k_dpmpp_2m"], default_schedule="Karras",
          options={"algorithm_type": "dpmsolver++", "solver_order": 2}),
    _spec("DPM++ SDE", "DPMSolverSDEScheduler", ["k_dpmpp_sde"], default_schedule="Karras", brownian_noise=True,
          schedule_input="sigma_flags"),
    _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", ["k_dpmpp_2m_sde"], default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    _spec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", ["k_dpmpp_2m_sde_heun"],
          default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"}),
    _spec("DPM++ 2S a", "DPMSolverSinglestepScheduler", ["k_dpmpp_2s_a"], default_schedule="Karras",
          options={"algorithm_type": "dpmsolver++", "solver_order": 2, "lower_order_final": True}),
    _spec("DPM++ 3M SDE", "DPMSolverMultistepScheduler", ["k_dpmpp_3m_sde"], default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    _spec("Euler a", "EulerAncestralDiscreteScheduler", ["k_euler_a", "k_euler_ancestral"], uses_ensd=True),
    _spec("Euler", "EulerDiscreteScheduler", ["k_euler"], schedule_input="sigmas"),
    _spec("LMS", "LMSDiscreteScheduler", ["k_lms"]),
    _spec("Heun", "HeunDiscreteScheduler", ["k_heun"], schedule_input="timesteps"),
    _spec("DPM2", "KDPM2DiscreteScheduler", ["k_dpm_2"], default_schedule="Karras", schedule_input="sigma_flags"),
    _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler", ["k_dpm_2_a"], default_schedule="Karras", uses_ensd=True,
          schedule_input="sigma_flags"),
    _spec("DDIM", "DDIMScheduler", (), keeps_model_spacing=True, uses_eta=True,
          options={"set_alpha_to_one": False}, schedule_input="spacing"),
    _spec("PLMS", "PNDMScheduler", (), keeps_model_spacing=True, options={"skip_prk_steps": True},
          schedule_input="spacing"),
    _spec("UniPC", "UniPCMultistepScheduler", (), keeps_model_spacing=True),
    _spec("LCM", "LCMScheduler", ["k_lcm"], keeps_model_spacing=True, schedule_input="own"),
)


def _lookup_table() -> Mapping[str, SamplerSpec]:
    table: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        for key in (spec.name, *spec.aliases):
            table[key.lower()] = spec
    return MappingProxyType(table)


_BY_NAME = _lookup_table()


def supported_schedule_types(spec: SamplerSpec) -> tuple[str, ...]:
    """Schedule types this sampler can use, in A1111's order ("Automatic" always)."""
    if spec.schedule_input in _COMPUTED_INPUTS:
        return SCHEDULE_TYPES
    if spec.schedule_input == "sigma_flags":
        return ("Automatic", *(s for s in SCHEDULE_TYPES if s in _NATIVE))
    if spec.schedule_input == "spacing":
        return ("Automatic", *(s for s in SCHEDULE_TYPES if s in _NATIVE and not _sigma_flags_of(s)))
    return ("Automatic",)


def schedule_choices(sampler_name: str) -> tuple[str, ...]:
    """The schedule types to offer for a sampler name (all of them for an unknown name)."""
    spec = _BY_NAME.get(sampler_name.strip().lower())
    return SCHEDULE_TYPES if spec is None else supported_schedule_types(spec)


def concrete_schedule(spec: SamplerSpec, schedule_type: str) -> str | None:
    """The schedule type "Automatic" stands for (the sampler's default), or None where the
    timestep samplers keep the model's own spacing."""
    if schedule_type != "Automatic":
        return schedule_type
    return None if spec.keeps_model_spacing else spec.default_schedule


def resolve_sampler(name: str, schedule_type: str = "Automatic", *,
                    check_pairing: bool = True) -> tuple[SamplerSpec, str]:
    """Resolve a sampler name (or alias, or old combined name) and a schedule type.

    Returns the spec and the schedule type to record ("Automatic" stays "Automatic"; a
    combined name such as "DPM++ 2M Karras" with "Automatic" yields "Karras").
    ``check_pairing`` False resolves the names only (a flow model takes pairs that the
    noise-prediction sampler does not, see ``job_schedulers.request_sampler``).

    Raises:
        UnknownSamplerError: unknown sampler or schedule type, or (``check_pairing``) a
            schedule type the sampler cannot use.
    """
    schedule_by_lower = {s.lower(): s for s in SCHEDULE_TYPES}
    schedule = schedule_by_lower.get((schedule_type or "Automatic").strip().lower())
    if schedule is None:
        choices = ", ".join(SCHEDULE_TYPES)
        raise UnknownSamplerError(f"unknown schedule type {schedule_type!r}; choose one of {choices}")
    key = name.strip().lower()
    spec = _BY_NAME.get(key)
    if spec is None:
        for suffix in ("karras", "exponential"):
            if key.endswith(" " + suffix) and key[: -len(suffix) - 1] in _BY_NAME:
                spec = _BY_NAME[key[: -len(suffix) - 1]]
                if schedule == "Automatic":
                    schedule = suffix.capitalize()
    if spec is None:
        known = ", ".join(s.name for s in SAMPLERS)
        raise UnknownSamplerError(f"unknown sampler {name!r}; choose one of {known}")
    if check_pairing and schedule not in supported_schedule_types(spec):
        raise UnknownSamplerError(f"schedule type {schedule!r} is not available for sampler {spec.name!r}")
    return spec, schedule


def build_scheduler(
    spec: SamplerSpec,
    schedule_type: str,
    model_scheduler_config: Mapping[str, Any],
    seeds: Sequence[int] = (),
) -> Any:
    """Create the diffusers scheduler for ``spec`` on a model's noise schedule.

    Its timesteps are not set yet: ``timed_scheduler`` does that, with the schedule type's sigmas.

    Args:
        spec: the sampler.
        schedule_type: one of ``SCHEDULE_TYPES`` that ``spec`` supports.
        model_scheduler_config: the checkpoint's scheduler config (betas, prediction type,
            number of training steps); only these schedule facts are kept from it.
        seeds: one seed per image of the batch, for samplers with Brownian-tree noise, so
            each image's noise depends on its own seed only.

    Returns:
        A fresh scheduler instance (schedulers hold per-run state; never share one).
    """
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
            "prediction_type", "steps_offset", "timestep_spacing", "rescale_betas_zero_snr")
    config = {k: v for k, v in model_scheduler_config.items() if k in keep}
    accepted = inspect.signature(spec.scheduler_cls.__init__).parameters
    config.update({flag: False for flag in _SIGMA_FLAGS if flag in accepted})
    concrete = concrete_schedule(spec, schedule_type)
    if concrete is not None:
        config.update(_COMPUTED_CONFIG if spec.schedule_input in _COMPUTED_INPUTS else _NATIVE[concrete])
    config.update(spec.options)
    if spec.brownian_noise and seeds:
        config["noise_sampler_seed"] = list(seeds) if len(seeds) > 1 else int(seeds[0])
    return spec.scheduler_cls.from_config({k: v for k, v in config.items() if k in accepted})


def timed_scheduler(spec: SamplerSpec, schedule_type: str, model_scheduler_config: Mapping[str, Any],
                    steps: int, device: Any, seeds: Sequence[int] = (), ays_table: Sequence[float] = ()) -> Any:
    """A fresh scheduler with its timesteps set for ``steps`` sampling steps of the schedule type.

    Samplers whose scheduler takes a computed schedule get the sigmas of ``schedules.py``
    (``ays_table`` is the model family's Align Your Steps table); the others get their config's own.
    """
    scheduler = build_scheduler(spec, schedule_type, model_scheduler_config, seeds)
    concrete = concrete_schedule(spec, schedule_type)
    if concrete is None or spec.schedule_input not in _COMPUTED_INPUTS:
        scheduler.set_timesteps(steps, device=device)
        return scheduler
    from modules.processing.sampling.schedule_input import set_computed_schedule

    set_computed_schedule(scheduler, spec.schedule_input, concrete, steps, device, ays_table)
    return scheduler


def partial_schedule(spec: SamplerSpec, schedule_type: str, model_scheduler_config: Mapping[str, Any],
                     seeds: Sequence[int], total_steps: int, steps_to_run: int, device: Any,
                     ays_table: Sequence[float] = ()) -> tuple[Any, int]:
    """A scheduler over ``total_steps`` that will run only the last ``steps_to_run`` of them
    (img2img, hires fix), and the index of its first call to run.

    The start is counted in scheduler calls (second-order samplers make ``order`` per step);
    ``set_begin_index`` tells the scheduler where its step counter starts.
    """
    scheduler = timed_scheduler(spec, schedule_type, model_scheduler_config, total_steps, device, seeds, ays_table)
    start = (total_steps - steps_to_run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler, start
