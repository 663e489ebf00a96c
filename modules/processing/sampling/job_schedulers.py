"""The scheduler of a job's pass for its model's family: one entry point for every family.

Noise-prediction models (SD1.x, SD2.x, SDXL) take A1111's samplers and schedule types on their
own noise schedule (``samplers.py``); rectified-flow models (FLUX.1) take the flow form of the
sampler, on their flow schedule shifted for the image size (``flow_samplers.py``). Both return
the same things, so txt2img, img2img and Hires. fix never ask which kind of model they run.

Starting part-way (img2img, Hires. fix): a noise-prediction model starts from
``x0 + sigma * eps`` (``add_noise``), a flow model from ``(1 - s) * x0 + s * eps`` (``scale_noise``,
Liu et al. 2022); ``noised_to`` picks the right one from the scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modules.families.base import ModelFamily
from modules.processing.errors import RequestValidationError
from modules.processing.sampling.flow_samplers import (
    FlowSamplerSpec,
    UnknownFlowSamplerError,
    flow_scheduler,
    resolve_flow_sampler,
)
from modules.processing.sampling.samplers import (
    SamplerSpec,
    UnknownSamplerError,
    partial_schedule,
    resolve_sampler,
    supported_schedule_types,
    timed_scheduler,
)

__all__ = ["FLOW_AUTOMATIC_SCHEDULE", "FLOW_SCHEDULE_TYPES", "PassScheduler", "noised_to", "pass_scheduler",
           "request_sampler", "starting_noise"]

#: The schedule types a flow model runs: its own shifted schedule, uniform in flow time, which is
#: what "Simple", "Normal", "Uniform" and "SGM Uniform" mean there (Forge's "Simple" for FLUX).
FLOW_SCHEDULE_TYPES = ("Automatic", "Simple", "Normal", "Uniform", "SGM Uniform")
#: What "Automatic" is recorded as on a flow model (Forge's name for FLUX's schedule), so the
#: infotext names the schedule that ran and pastes back to it.
FLOW_AUTOMATIC_SCHEDULE = "Simple"


@dataclass(frozen=True)
class PassScheduler:
    """A fresh scheduler for one denoising pass and what the loop needs with it.

    Attributes:
        spec: the sampler (``uses_eta`` / ``uses_ensd`` decide its step arguments and noise seeds).
        scheduler: the diffusers scheduler, its timesteps set.
        start: the index of the first scheduler call to run (0 for a whole schedule).
    """

    spec: SamplerSpec | FlowSamplerSpec
    scheduler: Any
    start: int = 0


def request_sampler(sampler_name: str, schedule_type: str,
                    field_names: tuple[str, str] = ("sampler_name", "scheduler")) -> tuple[str, str]:
    """The sampler and schedule type a request records, checked as far as they can be before its
    model is known: both names exist, and the pair runs on noise-prediction models or on flow
    models ("LCM" with "Simple" runs FLUX.1 only). The model's own kind is checked as its pass
    starts (``pass_scheduler``).

    Raises:
        RequestValidationError: naming ``field_names[0]`` (the sampler) or ``field_names[1]``.
    """
    sampler_field, schedule_field = field_names
    try:
        spec, schedule = resolve_sampler(sampler_name, schedule_type, check_pairing=False)
    except UnknownSamplerError as error:
        raise RequestValidationError(schedule_field if "schedule type" in str(error) else sampler_field,
                                     str(error)) from None
    if schedule not in supported_schedule_types(spec) and not _runs_flow(spec.name, schedule):
        raise RequestValidationError(schedule_field,
                                     f"schedule type {schedule!r} is not available for sampler {spec.name!r}")
    return spec.name, schedule


def _runs_flow(sampler_name: str, schedule: str) -> bool:
    try:
        resolve_flow_sampler(sampler_name)
    except UnknownFlowSamplerError:
        return False
    return schedule in FLOW_SCHEDULE_TYPES


def _noise_spec(sampler_name: str, schedule_type: str, family: ModelFamily) -> tuple[SamplerSpec, str]:
    try:
        return resolve_sampler(sampler_name, schedule_type)
    except UnknownSamplerError as error:
        field_name = "scheduler" if "schedule type" in str(error) else "sampler_name"
        raise RequestValidationError(field_name, f"{error} on {family.label}") from None


def _flow_spec(sampler_name: str, schedule_type: str, family: ModelFamily) -> FlowSamplerSpec:
    # A1111's aliases and combined names; the pairing is the flow schedule's, checked below
    spec, schedule = resolve_sampler(sampler_name, schedule_type, check_pairing=False)
    if schedule not in FLOW_SCHEDULE_TYPES:
        raise RequestValidationError("scheduler", f"schedule type {schedule!r} is not available for {family.label} "
                                     f"(a flow model); choose one of {', '.join(FLOW_SCHEDULE_TYPES)}")
    try:
        return resolve_flow_sampler(spec.name)
    except UnknownFlowSamplerError as error:
        raise RequestValidationError("sampler_name", f"{error} ({family.label} is a flow model)") from None


def pass_scheduler(family: ModelFamily, scheduler_config: dict[str, Any], sampler_name: str, schedule_type: str,
                   total_steps: int, latent_size: tuple[int, int], device: torch.device, seeds: Sequence[int] = (),
                   steps_to_run: int | None = None) -> PassScheduler:
    """The scheduler of a pass over ``total_steps`` steps that runs the last ``steps_to_run``
    of them (None: a whole schedule, as txt2img runs it; a number, even all of them, sets the
    scheduler's begin index as img2img does).

    Args:
        family: the model's family (its prediction type picks the kind of sampler).
        scheduler_config: the model's own noise or flow schedule.
        latent_size: (h, w) of the latents, which a flow model's shift depends on.
        seeds: the batch's seeds (Brownian-tree samplers seed their noise per image).

    Raises:
        RequestValidationError: an unknown sampler or schedule type, or one that does not run
            this family.
    """
    if family.prediction != "flow":
        spec, schedule = _noise_spec(sampler_name, schedule_type, family)
        if steps_to_run is None:
            return PassScheduler(spec, timed_scheduler(spec, schedule, scheduler_config, total_steps, device, seeds,
                                                       ays_table=family.align_your_steps))
        scheduler, start = partial_schedule(spec, schedule, scheduler_config, seeds, total_steps, steps_to_run,
                                            device, ays_table=family.align_your_steps)
        return PassScheduler(spec, scheduler, start)
    steps_to_run = total_steps if steps_to_run is None else steps_to_run
    flow_spec = _flow_spec(sampler_name, schedule_type, family)
    height, width = latent_size
    image_tokens = (height // 2) * (width // 2)  # 2 x 2 latent patches per transformer token
    scheduler = flow_scheduler(flow_spec, scheduler_config, total_steps, image_tokens, device, seeds)
    start = (total_steps - steps_to_run) * scheduler.order
    if start and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return PassScheduler(flow_spec, scheduler, start)


def starting_noise(scheduler: Any, noise: torch.Tensor) -> torch.Tensor:
    """The first latents of a whole schedule: the noise at the schedule's first level (sigma_max
    times unit noise for noise prediction, unit noise itself for flow)."""
    return noise * getattr(scheduler, "init_noise_sigma", 1.0)


def noised_to(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """Clean ``latents`` (B, C, h, w) noised with ``noise`` to the level of ``timestep`` (shape (1,))."""
    if hasattr(scheduler, "scale_noise"):
        # diffusers' flow-matching schedulers count timesteps as s * num_train_timesteps; their own
        # scale_noise reads the level from the step counter, not from the timestep it is given.
        sigma = (timestep.to(torch.float32) / scheduler.config.num_train_timesteps).reshape(-1, 1, 1, 1)
        sigma = sigma.to(latents.device)
        return ((1.0 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)
    return scheduler.add_noise(latents, noise, timestep)
