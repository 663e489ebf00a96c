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

__all__ = [
    "SCHEDULE_TYPES",
    "SAMPLERS",
    "SamplerSpec",
    "UnknownSamplerError",
    "build_scheduler",
    "expressible_schedule_types",
    "resolve_sampler",
    "supported_schedule_types",
]

#: Schedule types in A1111's dropdown order. "Automatic" means the sampler's own default.
SCHEDULE_TYPES: tuple[str, ...] = ("Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Beta")

# How each concrete schedule type is expressed in diffusers' scheduler config. "Uniform" is
# k-diffusion's default: timesteps spaced evenly over the whole training range ("linspace").
# "SGM Uniform" spaces them from t_max without reaching 0, which diffusers calls "trailing".
_SCHEDULE_OVERRIDES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "Uniform": {"timestep_spacing": "linspace"},
        "Karras": {"timestep_spacing": "linspace", "use_karras_sigmas": True},
        "Exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
        "SGM Uniform": {"timestep_spacing": "trailing"},
        "Beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
    }
)
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
# The scheduler argument without which a schedule type cannot be expressed at all.
_REQUIRED_ARGUMENT: Mapping[str, str | None] = MappingProxyType(
    {"Automatic": None, "Uniform": None, "Karras": "use_karras_sigmas",
     "Exponential": "use_exponential_sigmas", "SGM Uniform": "timestep_spacing", "Beta": "use_beta_sigmas"}
)


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
    #: Schedule types the diffusers scheduler can express (declared, so that validating a request
    #: needs no diffusers import; a test checks it against the scheduler's signature).
    schedule_types: tuple[str, ...] = ()

    @property
    def scheduler_cls(self) -> type:
        # Imported here: diffusers takes seconds to import, and listing samplers (the UI) needs none of it.
        import diffusers

        return getattr(diffusers, self.scheduler_class)


_SPACING_ONLY = ("Automatic", "Uniform", "SGM Uniform")


def _spec(name: str, cls: str, aliases: Sequence[str] = (), **kwargs: Any) -> SamplerSpec:
    options = MappingProxyType(dict(kwargs.pop("options", {})))
    kwargs.setdefault("schedule_types", SCHEDULE_TYPES)
    return SamplerSpec(name, cls, options, tuple(aliases), **kwargs)


#: In A1111's dropdown order (reference §1.1). Options follow A1111's per-sampler defaults.
SAMPLERS: tuple[SamplerSpec, ...] = (
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler", ["k_dpmpp_2m"], default_schedule="Karras",
          options={"algorithm_type": "dpmsolver++", "solver_order": 2}),
    _spec("DPM++ SDE", "DPMSolverSDEScheduler", ["k_dpmpp_sde"], default_schedule="Karras", brownian_noise=True),
    _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", ["k_dpmpp_2m_sde"], default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    _spec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", ["k_dpmpp_2m_sde_heun"],
          default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"}),
    _spec("DPM++ 2S a", "DPMSolverSinglestepScheduler", ["k_dpmpp_2s_a"], default_schedule="Karras",
          options={"algorithm_type": "dpmsolver++", "solver_order": 2, "lower_order_final": True},
          schedule_types=("Automatic", "Uniform", "Karras", "Exponential", "Beta")),
    _spec("DPM++ 3M SDE", "DPMSolverMultistepScheduler", ["k_dpmpp_3m_sde"], default_schedule="Exponential",
          options={"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    _spec("Euler a", "EulerAncestralDiscreteScheduler", ["k_euler_a", "k_euler_ancestral"], uses_ensd=True,
          schedule_types=_SPACING_ONLY),
    _spec("Euler", "EulerDiscreteScheduler", ["k_euler"]),
    _spec("LMS", "LMSDiscreteScheduler", ["k_lms"]),
    _spec("Heun", "HeunDiscreteScheduler", ["k_heun"]),
    _spec("DPM2", "KDPM2DiscreteScheduler", ["k_dpm_2"], default_schedule="Karras"),
    _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler", ["k_dpm_2_a"], default_schedule="Karras", uses_ensd=True),
    _spec("DDIM", "DDIMScheduler", (), keeps_model_spacing=True, uses_eta=True,
          options={"set_alpha_to_one": False}, schedule_types=_SPACING_ONLY),
    _spec("PLMS", "PNDMScheduler", (), keeps_model_spacing=True, options={"skip_prk_steps": True},
          schedule_types=_SPACING_ONLY),
    _spec("UniPC", "UniPCMultistepScheduler", (), keeps_model_spacing=True),
    _spec("LCM", "LCMScheduler", ["k_lcm"], keeps_model_spacing=True, schedule_types=_SPACING_ONLY),
)


def _lookup_table() -> Mapping[str, SamplerSpec]:
    table: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        for key in (spec.name, *spec.aliases):
            table[key.lower()] = spec
    return MappingProxyType(table)


_BY_NAME = _lookup_table()


def supported_schedule_types(spec: SamplerSpec) -> tuple[str, ...]:
    """Schedule types this sampler can use ("Automatic" always)."""
    return spec.schedule_types


def expressible_schedule_types(spec: SamplerSpec) -> tuple[str, ...]:
    """Schedule types the installed diffusers scheduler accepts (imports diffusers; for tests)."""
    accepted = inspect.signature(spec.scheduler_cls.__init__).parameters
    return tuple(s for s in SCHEDULE_TYPES if _REQUIRED_ARGUMENT[s] in (None, *accepted))


def resolve_sampler(name: str, schedule_type: str = "Automatic") -> tuple[SamplerSpec, str]:
    """Resolve a sampler name (or alias, or old combined name) and a schedule type.

    Returns the spec and the schedule type to record ("Automatic" stays "Automatic"; a
    combined name such as "DPM++ 2M Karras" with "Automatic" yields "Karras").

    Raises:
        UnknownSamplerError: unknown sampler or schedule type, or a schedule type the
            sampler cannot use.
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
    if schedule not in supported_schedule_types(spec):
        raise UnknownSamplerError(f"schedule type {schedule!r} is not available for sampler {spec.name!r}")
    return spec, schedule


def build_scheduler(
    spec: SamplerSpec,
    schedule_type: str,
    model_scheduler_config: Mapping[str, Any],
    seeds: Sequence[int] = (),
) -> Any:
    """Create the diffusers scheduler for ``spec`` on a model's noise schedule.

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
    concrete = spec.default_schedule if schedule_type == "Automatic" else schedule_type
    if not (schedule_type == "Automatic" and spec.keeps_model_spacing):
        config.update(_SCHEDULE_OVERRIDES[concrete])
    config.update(spec.options)
    if spec.brownian_noise and seeds:
        config["noise_sampler_seed"] = list(seeds) if len(seeds) > 1 else int(seeds[0])
    return spec.scheduler_cls.from_config({k: v for k, v in config.items() if k in accepted})


def partial_schedule(spec: SamplerSpec, schedule_type: str, model_scheduler_config: Mapping[str, Any],
                     seeds: Sequence[int], total_steps: int, steps_to_run: int, device: Any) -> tuple[Any, int]:
    """A scheduler over ``total_steps`` that will run only the last ``steps_to_run`` of them
    (img2img, hires fix), and the index of its first call to run.

    The start is counted in scheduler calls (second-order samplers make ``order`` per step);
    ``set_begin_index`` tells the scheduler where its step counter starts.
    """
    scheduler = build_scheduler(spec, schedule_type, model_scheduler_config, seeds)
    scheduler.set_timesteps(total_steps, device=device)
    start = (total_steps - steps_to_run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler, start
