"""Sampler x schedule type: every pair the UI offers runs, uses the schedule's sigmas, and a
different schedule gives a different image; pairs that cannot run are refused."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from modules.families.sd1 import AYS_SD15
from modules.models.loader import LoadedModel
from modules.processing.errors import RequestValidationError
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.flow_samplers import FLOW_SAMPLERS
from modules.processing.sampling.job_schedulers import FLOW_SCHEDULE_TYPES
from modules.processing.sampling.samplers import (
    SAMPLERS,
    SCHEDULE_TYPES,
    SamplerSpec,
    UnknownSamplerError,
    concrete_schedule,
    resolve_sampler,
    supported_schedule_types,
    timed_scheduler,
)
from modules.processing.sampling.schedule_input import noise_levels
from modules.processing.sampling.schedules import compute_sigmas

STEPS = 3
PAIRS = [(s.name, t) for s in SAMPLERS for t in supported_schedule_types(s)]
NOT_OFFERED = [(s.name, t) for s in SAMPLERS for t in SCHEDULE_TYPES if t not in supported_schedule_types(s)]
_SPECS = {s.name: s for s in SAMPLERS}


def _realised_sigmas(scheduler: object) -> np.ndarray:
    """The schedule a scheduler will sample: one noise level per step and the last, with
    second-order samplers' repeated entries folded (DDIM/PLMS keep only timesteps)."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:
        return torch.unique_consecutive(torch.as_tensor(sigmas)).double().numpy()
    timesteps = torch.unique_consecutive(scheduler.timesteps).double().numpy()
    return np.append(noise_levels(scheduler).t_to_sigma(timesteps), 0.0)


@pytest.fixture(scope="module")
def images() -> dict[tuple[str, str], np.ndarray]:
    """Pixels of each generated pair, shared by the tests of this module."""
    return {}


def _generate(model: LoadedModel, cache: dict[tuple[str, str], np.ndarray], pair: tuple[str, str]) -> np.ndarray:
    if pair not in cache:
        request = Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=STEPS, seed=5,
                                 sampler_name=pair[0], scheduler=pair[1])
        cache[pair] = np.asarray(run_txt2img(model, Job(request)).images[0], dtype=np.int16)
    return cache[pair]


@pytest.mark.parametrize(("sampler", "schedule"), PAIRS)
def test_every_offered_pair_generates_an_image(sd15_model: LoadedModel, images: dict, sampler: str,
                                               schedule: str) -> None:
    pixels = _generate(sd15_model, images, (sampler, schedule))
    assert pixels.shape == (64, 64, 3)
    assert pixels.std() > 1  # not blank: NaN latents decode to a flat image


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_schedules_with_different_sigmas_give_different_images(sd15_model: LoadedModel, images: dict,
                                                               sampler: str) -> None:
    by_table: dict[tuple[float, ...], np.ndarray] = {}
    for schedule in supported_schedule_types(_SPECS[sampler]):
        scheduler = timed_scheduler(_SPECS[sampler], schedule, sd15_model.scheduler_config, STEPS, "cpu",
                                    ays_table=sd15_model.family.align_your_steps)
        table = tuple(np.round(_realised_sigmas(scheduler), 4))
        pixels = _generate(sd15_model, images, (sampler, schedule))
        if table in by_table:
            assert np.array_equal(by_table[table], pixels), f"{schedule}: same sigmas, another image"
            continue
        for other in by_table.values():
            assert not np.array_equal(other, pixels), f"{schedule}: other sigmas, the same image"
        by_table[table] = pixels
    assert len(by_table) > 1 or supported_schedule_types(_SPECS[sampler]) == ("Automatic",)


@pytest.mark.parametrize(("sampler", "schedule"), [p for p in PAIRS if concrete_schedule(_SPECS[p[0]], p[1])])
def test_offered_pairs_sample_the_schedules_sigmas(sd15_model: LoadedModel, sampler: str, schedule: str) -> None:
    spec = _SPECS[sampler]
    scheduler = timed_scheduler(spec, schedule, sd15_model.scheduler_config, 7, "cpu",
                                ays_table=sd15_model.family.align_your_steps)
    got = _realised_sigmas(scheduler)
    want = compute_sigmas(concrete_schedule(spec, schedule), 7, noise_levels(scheduler), AYS_SD15)
    assert got.shape == want.shape
    # Exact where our list is handed over; where diffusers builds it from its config (or from
    # integer timesteps) the same timesteps give sigmas within a timestep's rounding.
    tolerance = 1e-5 if spec.schedule_input in ("sigmas", "table") else 1e-2
    assert got[:-1] == pytest.approx(want[:-1], rel=tolerance)


def _takes(function: object, name: str) -> bool:
    return name in inspect.signature(function).parameters


@pytest.mark.parametrize("spec", SAMPLERS, ids=lambda s: s.name)
def test_declared_schedule_input_matches_the_installed_diffusers(spec: SamplerSpec) -> None:
    cls = spec.scheduler_cls
    flags = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    if spec.schedule_input == "sigmas":
        assert _takes(cls.set_timesteps, "sigmas")
    elif spec.schedule_input == "timesteps":
        assert _takes(cls.set_timesteps, "timesteps")
    elif spec.schedule_input == "table":
        scheduler = cls()
        scheduler.set_timesteps(5)
        assert (len(scheduler.sigmas), len(scheduler.timesteps)) == (6, 5)
    elif spec.schedule_input == "sigma_flags":
        assert all(_takes(cls.__init__, flag) for flag in flags)
        assert not _takes(cls.set_timesteps, "sigmas") and not _takes(cls.set_timesteps, "timesteps")
    else:
        assert _takes(cls.__init__, "timestep_spacing") or spec.schedule_input == "own"
        assert not any(_takes(cls.__init__, flag) for flag in flags)


#: Pairs the SD sampler cannot run but its flow form can: a request takes them (its model
#: is not known yet) and an SD job refuses them as its pass starts.
FLOW_ONLY = [(s, t) for s, t in NOT_OFFERED if s in {f.name for f in FLOW_SAMPLERS} and t in FLOW_SCHEDULE_TYPES]


@pytest.mark.parametrize(("sampler", "schedule"), [p for p in NOT_OFFERED if p not in FLOW_ONLY])
def test_pairs_not_offered_are_refused_naming_the_scheduler_field(sampler: str, schedule: str) -> None:
    with pytest.raises(UnknownSamplerError, match="not available"):
        resolve_sampler(sampler, schedule)
    with pytest.raises(RequestValidationError) as refused:
        Txt2ImgRequest(prompt="x", sampler_name=sampler, scheduler=schedule)
    assert refused.value.field == "scheduler"


@pytest.mark.parametrize(("sampler", "schedule"), FLOW_ONLY)
def test_flow_only_pairs_are_refused_by_an_sd_job_naming_the_scheduler_field(sd15_model: LoadedModel, sampler: str,
                                                                             schedule: str) -> None:
    request = Txt2ImgRequest(prompt="x", sampler_name=sampler, scheduler=schedule, width=64, height=64,
                             num_inference_steps=STEPS)
    with pytest.raises(RequestValidationError, match=f"not available for sampler '{sampler}' on SD") as refused:
        run_txt2img(sd15_model, Job(request))
    assert refused.value.field == "scheduler"


def test_the_matrix_is_what_the_report_says() -> None:
    # 10 samplers x 12 schedule types; DPM++ SDE, DPM2, DPM2 a take 10 (no KL Optimal, Align Your
    # Steps); DDIM and PLMS 6 (spacings only); LCM its own schedule.
    assert len(PAIRS) == 10 * 12 + 3 * 10 + 2 * 6 + 1
    assert ("Euler a", "Karras") in PAIRS and ("LCM", "Karras") in NOT_OFFERED
    assert sorted(FLOW_ONLY) == [("LCM", "Normal"), ("LCM", "SGM Uniform"), ("LCM", "Simple"), ("LCM", "Uniform")]
