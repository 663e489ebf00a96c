"""Interrupt and skip act on one job, within one sampling step."""

from __future__ import annotations

import torch

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook, StepParams


class CancelAt(StepHook):
    """Calls ``action(job)`` after step ``step`` of batch ``batch`` and counts the steps run."""

    def __init__(self, job_box: list, batch: int, step: int, action: str) -> None:
        self.job_box, self.batch, self.step, self.action = job_box, batch, step, action
        self.steps_seen: list[tuple[int, int]] = []
        self.batch_seeds: list[tuple[int, ...]] = []

    def after_step(self, step: StepParams, latents: torch.Tensor) -> None:
        if step.seeds not in self.batch_seeds:  # each batch has its own seeds
            self.batch_seeds.append(step.seeds)
        batch = self.batch_seeds.index(step.seeds)
        self.steps_seen.append((batch, step.step))
        if (batch, step.step) == (self.batch, self.step):
            getattr(self.job_box[0].cancel, self.action)()


def _job(hook_factory, **fields: object) -> tuple[Job, StepHook]:
    base = {"prompt": "x", "width": 64, "height": 64, "num_inference_steps": 6, "seed": 40, "sampler_name": "Euler"}
    base.update(fields)
    box: list = []
    hook = hook_factory(box)
    job = Job(Txt2ImgRequest(**base), hooks=[hook])
    box.append(job)
    return job, hook


def test_interrupt_stops_within_one_step_and_returns_the_partly_denoised_image(sd15_model: LoadedModel) -> None:
    job, hook = _job(lambda box: CancelAt(box, batch=0, step=1, action="interrupt"))
    result = run_txt2img(sd15_model, job)
    assert result.interrupted
    assert hook.steps_seen == [(0, 0), (0, 1)]
    # As A1111: the image the last step predicted, with its infotext.
    assert len(result.images) == 1 and result.seeds == [40] and "Seed: 40" in result.infotexts[0]
    finished = run_txt2img(sd15_model, _job(lambda box: StepHook())[0]).images[0]
    assert result.images[0].size == finished.size
    assert result.images[0].tobytes() != finished.tobytes()


def test_interrupt_keeps_finished_batches(sd15_model: LoadedModel) -> None:
    job, hook = _job(lambda box: CancelAt(box, batch=1, step=2, action="interrupt"), batch_count=3)
    result = run_txt2img(sd15_model, job)
    assert result.interrupted
    assert result.seeds == [40, 41]  # batch 0 finished, batch 1 as far as it got, batch 2 never started
    assert hook.steps_seen[-1] == (1, 2)


def test_skip_drops_only_the_current_batch(sd15_model: LoadedModel) -> None:
    job, _ = _job(lambda box: CancelAt(box, batch=0, step=0, action="skip"), batch_count=2)
    result = run_txt2img(sd15_model, job)
    assert not result.interrupted
    assert result.skipped_batches == [0]
    assert result.seeds == [41]


def test_cancel_is_per_job(sd15_model: LoadedModel) -> None:
    other = Job(Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=2, seed=1))
    victim = Job(Txt2ImgRequest(prompt="x", width=64, height=64, num_inference_steps=2, seed=1))
    victim.cancel.interrupt()
    assert run_txt2img(sd15_model, victim).interrupted
    assert len(run_txt2img(sd15_model, other).images) == 1
