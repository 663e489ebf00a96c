"""The job queue: one worker thread runs jobs one at a time, first in, first out.

Every front end (browser, gradio_client, REST, CLI) submits ``Job`` objects here; the device
only ever runs one of them. Submitters see their place in the line, poll a consistent
``JobStatus`` snapshot (A1111's ``/internal/progress``) or block in ``wait``. Interrupt and
skip act on one job, by id. Finished jobs are kept for a while, so a reloaded page can fetch
its result again by id (A1111's "restore progress", which keeps only two).

Usage::

    queue = JobQueue(lambda job: run_txt2img(model, job))
    queue.start()
    job_id = queue.submit(Job(request))
    status = queue.wait(job_id)        # JobStatus(state="done", result=GenerationResult(...))
    queue.close(timeout=10)

Thread safety: every public method may be called from any thread. One lock guards all
bookkeeping; progress updates from the worker and status reads from pollers never see a
half-written state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from modules.models.files import ModelFileError
from modules.models.registry import ModelNotFoundError
from modules.processing.errors import (
    JobInterrupted,
    ModelUnavailableError,
    ProcessingError,
    RequestValidationError,
    StorageFullError,
)
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.output.saving import OutputPathError
from modules.processing.sampling.eta import remaining_s

__all__ = [
    "ERROR_KINDS",
    "FINISHED_STATES",
    "WORKER_THREAD_NAME",
    "JobQueue",
    "JobState",
    "JobStatus",
    "QueueClosedError",
    "QueueFullError",
    "SERVER_FAULT",
    "classify_failure",
]

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "interrupted", "cancelled"]
FINISHED_STATES: frozenset[str] = frozenset({"done", "failed", "interrupted", "cancelled"})
WORKER_THREAD_NAME = "aigen-worker"
#: What made a job fail: the request ("invalid_request": a bad value or a model it named that
#: cannot be used; HTTP 422), the server's set-up ("unavailable": the settings' model is broken,
#: or an output folder links out of the output tree; 503), a write that found no room
#: ("storage_full": 507, ``StorageFullError``), or a fault of the server ("server": 500, and
#: clients see only ``SERVER_FAULT``).
ERROR_KINDS = ("invalid_request", "unavailable", StorageFullError.code, "server")
#: The kinds whose message is written for clients (no server paths, no library text).
_PUBLIC_KINDS = frozenset(ERROR_KINDS) - {"server"}
#: What clients are told of a server fault; the log has the exception.
SERVER_FAULT = "the server failed to run this job (an internal error; the server's log has the details)"


class QueueFullError(ProcessingError):
    """``max_pending`` jobs are already waiting; the caller should try again later."""


class QueueClosedError(ProcessingError):
    """The queue has been closed and takes no new jobs."""


@dataclass(frozen=True)
class JobStatus:
    """A consistent, read-only snapshot of one job.

    ``position`` is 1, 2, ... while queued, 0 while running and None once finished.
    ``preview_latents`` is the live latent tensor (B, 4, H/8, W/8) of the latest progress update,
    not a copy: decode it lazily (``modules.processing.sampling.preview``) only when someone looks. It is
    None before the first step and once the job has finished (the result holds the images).
    """

    job_id: str
    state: JobState
    position: int | None
    step: int = 0
    total_steps: int = 0
    batch_index: int = 0
    batch_count: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    result: Any = None
    error: str | None = None
    preview_latents: torch.Tensor | None = field(default=None, repr=False)
    family: str | None = None
    #: What the API reader ignored in the submission (``Job.warnings``).
    warnings: tuple[str, ...] = ()
    #: For a failed job, one of ``ERROR_KINDS``.
    error_kind: str | None = None

    @property
    def is_finished(self) -> bool:
        """True for done, failed, interrupted and cancelled."""
        return self.state in FINISHED_STATES

    @property
    def public_error(self) -> str | None:
        """The error as any client may read it: the message of a request's or set-up's mistake
        (written without server paths), and only ``SERVER_FAULT`` for a fault of the server."""
        if self.error is None or self.error_kind in _PUBLIC_KINDS:
            return self.error
        return SERVER_FAULT


def classify_failure(error: BaseException) -> tuple[str, str]:
    """``(kind, message)`` of a job's exception (see ``ERROR_KINDS``); only a server fault's
    message may hold library text or paths, and it is for the log."""
    if isinstance(error, StorageFullError):  # says what could not be written, never where
        return StorageFullError.code, str(error)
    if isinstance(error, RequestValidationError):
        return "invalid_request", f"{error.field}: {error.message}"
    if isinstance(error, ModelFileError):  # an upscaler, ControlNet ... the request named
        return "invalid_request", f"the model file {error.public_message}"
    if isinstance(error, ModelNotFoundError):  # a name a script varied (X/Y/Z): written without paths
        return "invalid_request", str(error)
    if isinstance(error, (ModelUnavailableError, OutputPathError)):  # the set-up's fault, said without paths
        return "unavailable", str(error)
    message = str(error)
    return "server", f"{type(error).__name__}: {message}" if message else type(error).__name__


@dataclass
class _Entry:
    """Bookkeeping of a queued or running job; read and written only under the queue's lock."""

    job: Job
    progress: ProgressUpdate | None = None
    first_progress: ProgressUpdate | None = None  # the ETA's pace is measured from here
    started_at: float | None = None
    final: JobStatus | None = None


def _progress_fields(entry: _Entry, elapsed_s: float, keep_latents: bool) -> dict[str, Any]:
    """Step / batch / fraction fields of a snapshot, all taken from the same progress update."""
    update = entry.progress
    if update is None:  # before the first step: what the request asks for, if it says
        steps, batches = (getattr(entry.job.request, name, None) for name in ("num_inference_steps", "batch_count"))
        return {"total_steps": steps if isinstance(steps, int) else 0,
                "batch_count": batches if isinstance(batches, int) else 1}
    return {
        "step": update.step, "total_steps": update.total_steps,
        "batch_index": update.batch_index, "batch_count": update.batch_count,
        "fraction": update.fraction, "eta_s": remaining_s(entry.first_progress, update, elapsed_s),
        "family": update.family,
        "preview_latents": update.latents if keep_latents else None,
    }


class JobQueue:
    """Runs submitted jobs on one daemon worker thread ("aigen-worker"), one at a time, FIFO.

    Args:
        run: called on the worker thread with each job; whatever it returns becomes
            ``JobStatus.result``. A result with ``interrupted=True`` (``GenerationResult``) or a
            raised ``JobInterrupted`` gives state "interrupted"; any other exception gives
            "failed" with ``error = "<Type>: <message>"`` and the worker goes on.
        max_pending: how many jobs may wait (the running one not counted) before ``submit``
            raises ``QueueFullError``; a public attribute, so settings change it live.
        keep_finished: how many finished jobs stay queryable by id; the oldest are evicted.
        on_state: told ``(job_id, "running", None)`` when a job starts and ``(job_id, state,
            final status)`` when it ends (the durable ``JobStore`` records both). Called on the
            worker thread (or the cancelling one), never under the queue's lock.
    """

    def __init__(self, run: Callable[[Job], Any], max_pending: int = 64, keep_finished: int = 32,
                 on_state: Callable[[str, str, JobStatus | None], None] | None = None) -> None:
        if max_pending < 1 or keep_finished < 0:
            raise ValueError("max_pending must be >= 1 and keep_finished >= 0")
        self._run = run
        self.max_pending = max_pending
        self._on_state = on_state
        self._keep_finished = keep_finished
        self._changed = threading.Condition(threading.Lock())
        self._pending: deque[str] = deque()
        self._active: dict[str, _Entry] = {}
        self._finished: OrderedDict[str, JobStatus] = OrderedDict()
        self._current: str | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (idempotent). Jobs submitted before wait until then.

        Raises:
            QueueClosedError: the queue was closed.
        """
        with self._changed:
            if self._closed:
                raise QueueClosedError("the job queue is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=WORKER_THREAD_NAME, daemon=True)
                self._thread.start()

    def close(self, timeout: float | None = None) -> bool:
        """Stop: cancel the waiting jobs, interrupt the running one, join the worker.

        Args:
            timeout: seconds to wait for the running job to notice the interrupt (None = forever).

        Returns:
            True if no worker thread is left running.
        """
        with self._changed:
            self._closed = True
            while self._pending:
                self._cancel_queued_locked(self._active[self._pending[0]])
            if self._current is not None:
                self._active[self._current].job.cancel.interrupt()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def __enter__(self) -> JobQueue:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submitting and controlling jobs ---------------------------------------------------

    def submit(self, job: Job) -> str:
        """Queue ``job`` behind the others and return its id.

        The queue wraps ``job.on_progress`` to record progress; the original callback is still
        called after each update. ``job.started_at`` is reset when the job starts running, so
        its elapsed time and ETA do not include the wait in line.

        Raises:
            QueueFullError: ``max_pending`` jobs are already waiting.
            QueueClosedError: the queue was closed.
            ValueError: a job with the same id was already submitted.
        """
        with self._changed:
            if self._closed:
                raise QueueClosedError("the job queue is closed")
            if len(self._pending) >= self.max_pending:
                raise QueueFullError(f"{len(self._pending)} jobs are already waiting (limit {self.max_pending})")
            if job.id in self._active or job.id in self._finished:
                raise ValueError(f"job {job.id} was already submitted")
            self._wrap_progress(job)
            self._active[job.id] = _Entry(job)
            self._pending.append(job.id)
            self._changed.notify_all()
        return job.id

    def interrupt(self, job_id: str) -> bool:
        """Stop one job: a queued job is removed ("cancelled"); a running one is interrupted.

        Returns:
            True if the job was queued or running, False if it had already finished.

        Raises:
            KeyError: unknown (or evicted) job id.
        """
        with self._changed:
            entry = self._lookup_active(job_id)
            if entry is None:
                return False
            if job_id == self._current:
                entry.job.cancel.interrupt()
                return True
            self._cancel_queued_locked(entry)
        self._notify(job_id, "cancelled", entry.final)
        return True

    def skip(self, job_id: str) -> bool:
        """Skip the current batch of a running job (the job goes on with its next batch).

        Returns:
            True if the job is running; False if it is queued (nothing to skip yet) or finished.

        Raises:
            KeyError: unknown (or evicted) job id.
        """
        with self._changed:
            entry = self._lookup_active(job_id)
            if entry is None or job_id != self._current:
                return False
            entry.job.cancel.skip()
            return True

    # -- reading ---------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """A snapshot of a queued, running or recently finished job.

        Raises:
            KeyError: unknown (or evicted) job id.
        """
        with self._changed:
            entry = self._lookup_active(job_id)
            return self._finished[job_id] if entry is None else self._snapshot_locked(entry)

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished and return its final status.

        On timeout the current, unfinished status is returned (check ``is_finished``), which
        suits callers that poll in slices. A job evicted while waiting is still returned.

        Raises:
            KeyError: unknown (or evicted) job id.
        """
        with self._changed:
            entry = self._lookup_active(job_id)
            if entry is None:
                return self._finished[job_id]
            self._changed.wait_for(lambda: entry.final is not None, timeout)
            return entry.final if entry.final is not None else self._snapshot_locked(entry)

    def pending_ids(self) -> list[str]:
        """Ids of the waiting jobs, next to run first."""
        with self._changed:
            return list(self._pending)

    def current_id(self) -> str | None:
        """Id of the running job, or None when idle."""
        with self._changed:
            return self._current

    # -- internals (the lock is held where the name ends in _locked) -----------------------

    def _lookup_active(self, job_id: str) -> _Entry | None:
        """The active entry, None if the job finished, KeyError if it is unknown."""
        entry = self._active.get(job_id)
        if entry is None and job_id not in self._finished:
            raise KeyError(job_id)
        return entry

    def _wrap_progress(self, job: Job) -> None:
        original = job.on_progress

        def on_progress(update: ProgressUpdate) -> None:
            """Record the update for ``status``, then pass it on to the job's own callback."""
            with self._changed:
                entry = self._active.get(job.id)
                if entry is not None:
                    entry.progress = update
                    entry.first_progress = entry.first_progress or update
            if original is not None:
                original(update)

        job.on_progress = on_progress

    def _snapshot_locked(self, entry: _Entry) -> JobStatus:
        job_id = entry.job.id
        if job_id == self._current:
            elapsed = time.monotonic() - (entry.started_at or time.monotonic())
            return JobStatus(job_id, "running", 0, elapsed_s=elapsed, warnings=entry.job.warnings,
                             **_progress_fields(entry, elapsed, True))
        position = self._pending.index(job_id) + 1
        return JobStatus(job_id, "queued", position, warnings=entry.job.warnings,
                         **_progress_fields(entry, 0.0, False))

    def _final_status(self, entry: _Entry, state: JobState, result: Any, error: tuple[str, str] | None,
                      ) -> JobStatus:
        elapsed = 0.0 if entry.started_at is None else time.monotonic() - entry.started_at
        fields = _progress_fields(entry, elapsed, keep_latents=False)
        if state == "done":
            fields.update(fraction=1.0, eta_s=0.0)
        kind, message = error if error is not None else (None, None)
        return JobStatus(entry.job.id, state, None, elapsed_s=elapsed, result=result, error=message,
                         warnings=entry.job.warnings, error_kind=kind, **fields)

    def _finish_locked(self, entry: _Entry, state: JobState, result: Any = None,
                       error: tuple[str, str] | None = None, final: JobStatus | None = None) -> None:
        job_id = entry.job.id
        entry.final = final or self._final_status(entry, state, result, error)
        entry.progress = entry.first_progress = None  # drop the latents; the result holds the images
        del self._active[job_id]
        if self._current == job_id:
            self._current = None
        self._finished[job_id] = entry.final
        while len(self._finished) > self._keep_finished:
            self._finished.popitem(last=False)
        self._changed.notify_all()

    def _cancel_queued_locked(self, entry: _Entry) -> None:
        self._pending.remove(entry.job.id)
        entry.job.cancel.interrupt()  # anyone else holding the job sees it stopped
        self._finish_locked(entry, "cancelled")

    def _take_next(self) -> _Entry | None:
        """Block until a job is waiting; mark it running. None once the queue is closed."""
        with self._changed:
            while True:
                self._changed.wait_for(lambda: self._closed or bool(self._pending))
                if self._closed:
                    return None
                entry = self._active[self._pending[0]]
                if entry.job.cancel.is_interrupted:  # interrupted through its token while waiting
                    self._cancel_queued_locked(entry)
                    continue
                self._pending.popleft()
                self._current = entry.job.id
                entry.started_at = entry.job.started_at = time.monotonic()
                self._changed.notify_all()
                return entry

    def _execute(self, job: Job) -> tuple[JobState, Any, tuple[str, str] | None]:
        """Run one job; never raises, so the worker thread survives any job. A failure comes
        back as ``(kind, message)`` (``classify_failure``)."""
        try:
            result = self._run(job)
        except JobInterrupted:
            return "interrupted", None, None
        except BaseException as error:  # noqa: BLE001 - a job calling sys.exit() must not kill the worker
            kind, message = classify_failure(error)
            if kind == "server":
                logger.exception("job %s failed", job.id)
            else:  # the client's (or the set-up's) mistake: one line, no traceback
                logger.warning("job %s refused: %s", job.id, message)
            return "failed", None, (kind, message)
        if getattr(result, "interrupted", False) is True:
            return "interrupted", result, None
        return "done", result, None

    def _notify(self, job_id: str, state: str, status: JobStatus | None) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(job_id, state, status)
        except Exception:  # a failing journal must not stop the worker; the job itself is fine
            logger.exception("recording job %s as %s failed", job_id, state)

    def _work(self) -> None:
        while (entry := self._take_next()) is not None:
            self._notify(entry.job.id, "running", None)
            state, result, error = self._execute(entry.job)
            with self._changed:
                final = self._final_status(entry, state, result, error)
            # Recorded before anyone waiting is woken, so whoever sees the job end finds it stored.
            self._notify(entry.job.id, state, final)
            with self._changed:
                self._finish_locked(entry, state, final=final)
