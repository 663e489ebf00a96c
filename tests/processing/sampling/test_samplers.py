"""The sampler registry: A1111 names, unique aliases, and every sampler generating deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.samplers import SAMPLERS, SCHEDULE_TYPES, supported_schedule_types

REQUIRED = ("Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
            "DPM++ 2M SDE", "DDIM", "PLMS", "UniPC", "LCM")


def test_required_samplers_and_schedule_types_exist() -> None:
    names = [s.name for s in SAMPLERS]
    assert set(REQUIRED) <= set(names)
    assert {"Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform", "Align Your Steps"} <= set(SCHEDULE_TYPES)


def test_names_and_aliases_are_unique() -> None:
    keys = [k.lower() for s in SAMPLERS for k in (s.name, *s.aliases)]
    assert len(keys) == len(set(keys))


def _pixels(model: LoadedModel, **fields: object) -> np.ndarray:
    request = Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=3, seed=11, **fields)
    result = run_txt2img(model, Job(request))
    return np.stack([np.asarray(image) for image in result.images])


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_every_sampler_runs_and_is_deterministic(sd15_model: LoadedModel, sampler: str) -> None:
    schedule = supported_schedule_types(next(s for s in SAMPLERS if s.name == sampler))[-1]
    first = _pixels(sd15_model, sampler_name=sampler, scheduler=schedule)
    second = _pixels(sd15_model, sampler_name=sampler, scheduler=schedule)
    assert first.shape == (1, 64, 64, 3)
    assert np.array_equal(first, second)
    assert first.std() > 0  # not a blank image


def test_samplers_differ(sd15_model: LoadedModel) -> None:
    euler = _pixels(sd15_model, sampler_name="Euler")
    ancestral = _pixels(sd15_model, sampler_name="Euler a")
    assert not np.array_equal(euler, ancestral)


def test_every_schedule_type_runs_on_every_sampler_that_takes_a_schedule() -> None:
    computed = [s.name for s in SAMPLERS if supported_schedule_types(s) == SCHEDULE_TYPES]
    assert set(computed) >= {"Euler a", "Euler", "LMS", "Heun", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ 2S a",
                             "DPM++ 3M SDE", "UniPC"}
    assert all("Automatic" in supported_schedule_types(s) for s in SAMPLERS)
