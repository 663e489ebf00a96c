"""The job queue: FIFO on one worker, positions, per-job interrupt/skip, failures, progress, retention.
Fake run functions are driven by ``threading.Event``s, so nothing here depends on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from modules.models.loader import LoadedModel
from modules.processing.errors import BatchSkipped, JobInterrupted, ProcessingError
from modules.processing.generation.txt2img import GenerationResult, run_txt2img
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.jobs.queue import WORKER_THREAD_NAME, JobQueue, JobStatus, QueueClosedError, QueueFullError
from modules.processing.requests import Txt2ImgRequest

TIMEOUT = 10.0  # only reached when a test is broken; no test waits this long when it passes


@dataclass
class Plan:
    """What a fake job does: optional progress updates, then wait for ``release`` or an interrupt."""

    name: str
    updates: tuple[ProgressUpdate, ...] = ()
    hold: bool = False
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)
    reported: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class FakeResult:
    name: str
    interrupted: bool = False


class FakeEngine:
    """A ``run`` function that records the order jobs ran in and how many ran at once."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.running = self.max_running = 0
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> FakeResult:
        plan: Plan = job.request
        with self._lock:
            self.order.append(plan.name)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self._behave(job, plan)
        finally:
            with self._lock:
                self.running -= 1

    @staticmethod
    def _behave(job: Job, plan: Plan) -> FakeResult:
        plan.started.set()
        for update in plan.updates:
            job.on_progress(update)  # type: ignore[misc]  # the queue always installs one
        plan.reported.set()
        if plan.error is not None:
            raise plan.error
        while plan.hold and not plan.release.is_set():
            if job.cancel.is_interrupted:
                return FakeResult(plan.name, interrupted=True)
            plan.release.wait(0.005)
        return FakeResult(plan.name)


def _job(name: str, **plan_fields: Any) -> Job:
    return Job(Plan(name, **plan_fields))


def _started(job: Job) -> None:
    assert job.request.started.wait(TIMEOUT), f"job {job.request.name} never started"


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_queue(engine: FakeEngine) -> Iterator[Callable[..., JobQueue]]:
    queues: list[JobQueue] = []

    def make(run: Callable[[Job], Any] | None = None, start: bool = True, **kwargs: Any) -> JobQueue:
        queue = JobQueue(run or engine, **kwargs)
        queues.append(queue)
        if start:
            queue.start()
        return queue

    yield make
    for queue in queues:
        assert queue.close(timeout=TIMEOUT)


def test_jobs_run_one_at_a_time_in_submission_order(make_queue, engine: FakeEngine) -> None:
    queue = make_queue(start=False)
    jobs = [_job(f"j{i}") for i in range(5)]
    ids = [queue.submit(job) for job in jobs]
    assert ids == [job.id for job in jobs]
    assert queue.pending_ids() == ids and queue.current_id() is None  # nothing runs before start()
    queue.start()
    finals = [queue.wait(job_id, TIMEOUT) for job_id in ids]
    assert engine.order == ["j0", "j1", "j2", "j3", "j4"]
    assert engine.max_running == 1
    assert [s.state for s in finals] == ["done"] * 5
    assert [s.result.name for s in finals] == engine.order
    assert queue.pending_ids() == [] and queue.current_id() is None


def test_positions_count_from_one_while_queued_and_zero_while_running(make_queue) -> None:
    queue = make_queue()
    first, second, third = _job("a", hold=True), _job("b", hold=True), _job("c")
    queue.submit(first)
    _started(first)
    queue.submit(second)
    queue.submit(third)
    assert [queue.status(j.id).position for j in (first, second, third)] == [0, 1, 2]
    assert [queue.status(j.id).state for j in (first, second, third)] == ["running", "queued", "queued"]
    assert queue.current_id() == first.id and queue.pending_ids() == [second.id, third.id]
    first.request.release.set()
    _started(second)
    assert queue.status(second.id).position == 0 and queue.status(third.id).position == 1
    done = queue.wait(first.id, TIMEOUT)
    assert done.position is None and done.is_finished
    second.request.release.set()
    assert queue.wait(third.id, TIMEOUT).state == "done"


def test_interrupting_a_queued_job_removes_it_without_running_it(make_queue, engine: FakeEngine) -> None:
    queue = make_queue()
    running, doomed, after = _job("run", hold=True), _job("doomed"), _job("after")
    for job in (running, doomed, after):
        queue.submit(job)
    _started(running)
    assert queue.interrupt(doomed.id) is True
    status = queue.status(doomed.id)
    assert status.state == "cancelled" and status.position is None and status.result is None
    assert queue.pending_ids() == [after.id]
    assert queue.status(after.id).position == 1
    assert not running.cancel.is_interrupted  # the running job is untouched
    running.request.release.set()
    assert queue.wait(after.id, TIMEOUT).state == "done"
    assert engine.order == ["run", "after"]


def test_a_job_interrupted_through_its_own_token_while_waiting_never_runs(make_queue, engine: FakeEngine) -> None:
    queue = make_queue(start=False)
    early, late = _job("early"), _job("late")
    queue.submit(early)
    queue.submit(late)
    early.cancel.interrupt()
    queue.start()
    assert queue.wait(early.id, TIMEOUT).state == "cancelled"
    assert queue.wait(late.id, TIMEOUT).state == "done"
    assert engine.order == ["late"]


def test_interrupt_reaches_only_the_running_job(make_queue) -> None:
    queue = make_queue()
    running, waiting = _job("run", hold=True), _job("wait")
    queue.submit(running)
    queue.submit(waiting)
    _started(running)
    assert queue.interrupt(running.id) is True
    assert running.cancel.is_interrupted and not waiting.cancel.is_interrupted
    final = queue.wait(running.id, TIMEOUT)
    assert final.state == "interrupted" and final.result == FakeResult("run", interrupted=True)
    assert queue.wait(waiting.id, TIMEOUT).state == "done"


def test_skip_reaches_only_the_running_job(make_queue) -> None:
    queue = make_queue()
    running, waiting = _job("run", hold=True), _job("wait", hold=True)
    queue.submit(running)
    queue.submit(waiting)
    _started(running)
    assert queue.skip(waiting.id) is False  # nothing to skip before it runs
    assert queue.skip(running.id) is True
    with pytest.raises(BatchSkipped):
        running.cancel.raise_if_cancelled()
    waiting.cancel.raise_if_cancelled()  # its token is clean
    assert not running.cancel.is_interrupted
    running.request.release.set()
    waiting.request.release.set()
    assert queue.wait(running.id, TIMEOUT).state == "done"
    assert queue.wait(waiting.id, TIMEOUT).state == "done"


def test_finished_and_unknown_jobs(make_queue) -> None:
    queue = make_queue()
    job = _job("x")
    queue.wait(queue.submit(job), TIMEOUT)
    assert queue.interrupt(job.id) is False
    assert queue.skip(job.id) is False
    assert queue.wait(job.id, 0).state == "done"
    with pytest.raises(ValueError, match="already submitted"):
        queue.submit(job)
    for method in (queue.status, queue.interrupt, queue.skip, queue.wait):
        with pytest.raises(KeyError):
            method("no-such-job")


def test_a_failing_job_is_reported_and_the_next_job_still_runs(make_queue) -> None:
    queue = make_queue()
    bad, stop, good = _job("bad", error=RuntimeError("boom")), _job("stop", error=SystemExit(3)), _job("good")
    halted = _job("halted", error=JobInterrupted("interrupted"))  # raised, not returned: still "interrupted"
    for job in (bad, stop, halted, good):
        queue.submit(job)
    failed = queue.wait(bad.id, TIMEOUT)
    assert failed.state == "failed" and failed.error == "RuntimeError: boom" and failed.result is None
    assert queue.wait(stop.id, TIMEOUT).error == "SystemExit: 3"
    assert (queue.wait(halted.id, TIMEOUT).state, queue.status(halted.id).error) == ("interrupted", None)
    assert queue.wait(good.id, TIMEOUT).state == "done"
    assert any(t.name == WORKER_THREAD_NAME and t.is_alive() for t in threading.enumerate())


def test_submit_raises_queue_full_when_max_pending_jobs_wait(make_queue) -> None:
    queue = make_queue(max_pending=2)
    running = _job("run", hold=True)
    queue.submit(running)
    _started(running)  # the running job does not count as pending
    queue.submit(_job("p1"))
    last = queue.submit(_job("p2"))
    overflow = _job("p3")
    with pytest.raises(QueueFullError) as caught:
        queue.submit(overflow)
    assert isinstance(caught.value, ProcessingError) and "limit 2" in str(caught.value)
    with pytest.raises(KeyError):
        queue.status(overflow.id)
    running.request.release.set()
    assert queue.wait(last, TIMEOUT).state == "done"
    queue.submit(overflow)  # room again once the line has moved
    assert queue.wait(overflow.id, TIMEOUT).state == "done"


def test_wait_returns_the_final_status_and_times_out_with_the_current_one(make_queue) -> None:
    queue = make_queue()
    job = _job("x", hold=True)
    queue.submit(job)
    _started(job)
    early = queue.wait(job.id, timeout=0.01)
    assert early.state == "running" and not early.is_finished
    finished: list[JobStatus] = []
    waiter = threading.Thread(target=lambda: finished.append(queue.wait(job.id)))
    waiter.start()
    job.request.release.set()
    waiter.join(TIMEOUT)
    assert not waiter.is_alive()
    assert finished[0].state == "done" and finished[0].result == FakeResult("x")
    assert finished[0] == queue.status(job.id)


def _update(job: Job, batch_index: int, step: int, latents: torch.Tensor) -> ProgressUpdate:
    return ProgressUpdate(job.id, batch_index, 2, step, 4, elapsed_s=0.0, latents=latents, family="sdxl")


def test_progress_snapshot_during_a_run(make_queue) -> None:
    queue = make_queue()
    latents = torch.zeros(1, 4, 8, 8)
    seen: list[ProgressUpdate] = []
    job = Job(Plan("p", hold=True), on_progress=seen.append)
    job.request.updates = (_update(job, 0, 4, latents), _update(job, 1, 3, latents))
    before = queue.status(queue.submit(job))
    assert before.preview_latents is None and before.step == 0
    assert job.request.reported.wait(TIMEOUT)
    status = queue.status(job.id)
    assert (status.state, status.batch_index, status.batch_count) == ("running", 1, 2)
    assert (status.step, status.total_steps) == (3, 4)
    assert status.fraction == pytest.approx(0.875)
    assert status.preview_latents is latents and status.family == "sdxl"
    assert status.eta_s is not None and status.eta_s >= 0.0 and status.elapsed_s >= 0.0
    assert seen == list(job.request.updates)  # the caller's own callback still runs
    job.request.release.set()
    final = queue.wait(job.id, TIMEOUT)
    assert final.state == "done" and final.fraction == 1.0 and final.eta_s == 0.0
    assert final.preview_latents is None  # the tensor is released once the job ends
    assert (final.step, final.total_steps) == (3, 4)


def test_status_is_consistent_under_concurrent_reads(make_queue) -> None:
    latents = torch.zeros(1, 4, 8, 8)
    release = threading.Event()

    def run(job: Job) -> str:  # reports progress as fast as it can until released
        count = 0
        while not release.is_set():
            batch, step = divmod(count % 8, 4)
            job.on_progress(_update(job, batch, step + 1, latents))
            count += 1
        return "ok"

    queue = make_queue(run)
    job_id = queue.submit(Job(Plan("busy")))
    snapshots: list[JobStatus] = []
    lock = threading.Lock()

    def enough() -> bool:  # many reads, spread over several different updates
        with lock:
            return len(snapshots) >= 300 and len({(s.batch_index, s.step) for s in snapshots}) >= 4

    def poll() -> None:
        deadline = time.monotonic() + TIMEOUT  # a guard against hanging, not a timing assertion
        while not enough() and time.monotonic() < deadline:
            status = queue.status(job_id)
            if status.step:
                with lock:
                    snapshots.append(status)

    readers = [threading.Thread(target=poll) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(TIMEOUT)
    release.set()
    assert len(snapshots) >= 300
    for status in snapshots:  # every field of a snapshot comes from the same update
        expected = (status.batch_index + status.step / status.total_steps) / status.batch_count
        assert status.fraction == pytest.approx(expected)
        assert status.state == "running" and status.preview_latents is latents
    assert enough()  # the reads really overlapped the writes
    assert queue.wait(job_id, TIMEOUT).result == "ok"


def test_finished_jobs_are_kept_up_to_keep_finished(make_queue) -> None:
    queue = make_queue(keep_finished=2)
    jobs = [_job(f"j{i}") for i in range(3)]
    for job in jobs:
        queue.submit(job)
    assert queue.wait(jobs[-1].id, TIMEOUT).state == "done"  # FIFO: the others finished before
    with pytest.raises(KeyError):
        queue.status(jobs[0].id)  # the oldest was evicted
    assert [queue.status(j.id).result.name for j in jobs[1:]] == ["j1", "j2"]


def test_wait_survives_eviction_of_the_awaited_job(make_queue) -> None:
    queue = make_queue(keep_finished=0)
    job = _job("gone", hold=True)
    queue.submit(job)
    _started(job)
    result: list[JobStatus] = []
    waiter = threading.Thread(target=lambda: result.append(queue.wait(job.id)))
    waiter.start()
    job.request.release.set()
    waiter.join(TIMEOUT)
    assert result[0].state == "done"
    with pytest.raises(KeyError):
        queue.status(job.id)


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER_THREAD_NAME and t.is_alive()]


def test_close_interrupts_the_running_job_cancels_the_rest_and_joins(make_queue) -> None:
    before = set(_worker_threads())
    queue = make_queue()
    queue.start()  # idempotent: still one worker, a daemon
    workers = set(_worker_threads()) - before
    assert len(workers) == 1 and all(t.daemon for t in workers)
    running, waiting = _job("run", hold=True), _job("wait")
    queue.submit(running)
    queue.submit(waiting)
    _started(running)
    assert queue.close(timeout=TIMEOUT) is True
    assert set(_worker_threads()) == before
    assert queue.status(running.id).state == "interrupted"
    assert queue.status(waiting.id).state == "cancelled" and waiting.cancel.is_interrupted
    with pytest.raises(QueueClosedError):
        queue.submit(_job("late"))
    with pytest.raises(QueueClosedError):
        queue.start()


def test_txt2img_runs_through_the_queue(sd15_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="a red circle", width=64, height=64, num_inference_steps=2, seed=1)
    queue = JobQueue(lambda job: run_txt2img(sd15_model, job))
    job_id = queue.submit(Job(request))
    assert (queue.status(job_id).state, queue.status(job_id).total_steps) == ("queued", 2)
    with queue:  # starts the worker; closes and joins it on the way out
        final = queue.wait(job_id, timeout=120)
    assert final.state == "done", final.error
    assert (final.step, final.total_steps, final.batch_count) == (2, 2, 1)
    assert final.fraction == 1.0 and final.family == "sd15"
    assert isinstance(final.result, GenerationResult) and not final.result.interrupted
    assert [image.size for image in final.result.images] == [(64, 64)]
    assert final.result.seeds == [1]
