"""The ETA a running job shows: measured from the first completed step, so a slow first step
(loading the model, warming up) does not put the early estimate off by 10x.

The clock is fake: each progress update carries the elapsed seconds it was made at.
"""

from __future__ import annotations

import threading

import pytest
import torch

from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.jobs.queue import JobQueue
from modules.processing.sampling.eta import remaining_s

LATENTS = torch.zeros(1, 4, 8, 8)
LOAD_S, STEP_S, STEPS = 10.0, 0.1, 20  # a 10 s first step (model load), then 0.1 s a step


def _update(step: int, elapsed_s: float, batch_index: int = 0, batch_count: int = 1,
            total_steps: int = STEPS) -> ProgressUpdate:
    return ProgressUpdate("job", batch_index, batch_count, step, total_steps, elapsed_s, LATENTS)


def _elapsed_after(step: int) -> float:
    """The fake clock: when step ``step`` (1-based) of the slow-start job completes."""
    return LOAD_S + STEP_S * step


def test_after_a_slow_first_step_the_estimate_is_near_the_true_time_left() -> None:
    first = _update(1, _elapsed_after(1))
    for step in (2, 3, 5, 10, 19):
        latest = _update(step, _elapsed_after(step))
        true_left = STEP_S * (STEPS - step)
        estimate = remaining_s(first, latest, latest.elapsed_s)
        assert estimate is not None
        assert true_left / 1.5 <= estimate <= true_left * 1.5, (step, estimate, true_left)
        # A1111's elapsed / progress formula, for contrast: off by far more than 10x this early.
        if step <= 3:
            assert latest.eta_s > 10 * true_left


def test_no_estimate_until_a_second_step_is_done() -> None:
    first = _update(1, _elapsed_after(1))
    assert remaining_s(None, None, 0.0) is None
    assert remaining_s(first, first, first.elapsed_s) is None  # one step: no pace yet


def test_time_since_the_latest_step_is_taken_off_and_never_goes_below_zero() -> None:
    first, latest = _update(1, _elapsed_after(1)), _update(11, _elapsed_after(11))
    at_update = remaining_s(first, latest, latest.elapsed_s)
    assert at_update == pytest.approx(0.9)
    assert remaining_s(first, latest, latest.elapsed_s + 0.4) == pytest.approx(0.5)
    assert remaining_s(first, latest, latest.elapsed_s + 60.0) == 0.0


def test_the_pace_spans_batches() -> None:
    """Two batches of 20 steps: halfway through the second, half a batch is left."""
    first = _update(1, _elapsed_after(1), batch_count=2)
    latest = _update(10, _elapsed_after(30), batch_index=1, batch_count=2)
    assert remaining_s(first, latest, latest.elapsed_s) == pytest.approx(STEP_S * 10)


def test_a_running_jobs_status_shows_the_estimate_from_the_first_step() -> None:
    """Through the queue: a job that reports a slow first step and fast later ones."""
    reported, release = threading.Event(), threading.Event()

    def run(job: Job) -> None:
        for step in (1, 2, 3, 4):
            job.on_progress(_update(step, _elapsed_after(step)))  # type: ignore[misc]  # the queue installs one
        reported.set()
        release.wait(10.0)

    with JobQueue(run) as queue:
        job_id = queue.submit(Job(request=None))
        assert reported.wait(10.0)
        status = queue.status(job_id)
        release.set()
        assert queue.wait(job_id, 10.0).eta_s == 0.0
    true_left = STEP_S * (STEPS - 4)
    assert status.step == 4 and status.eta_s is not None
    # The fake updates say 10.4 s have passed; the real clock is behind them, so nothing is taken off.
    assert status.eta_s == pytest.approx(true_left)
