"""A job: one request plus its own cancel token, progress reporting and hooks.

Interrupt and skip act on one job only; there is no process-wide flag.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.processing.errors import BatchSkipped, JobInterrupted
from modules.processing.sampling.hooks import StepHook

__all__ = ["CancelToken", "Job", "ProgressUpdate", "ProgressCallback"]


class CancelToken:
    """Interrupt (stop the job) and skip (drop the current batch, go on) for one job."""

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._skip = threading.Event()

    def interrupt(self) -> None:
        self._interrupt.set()

    def skip(self) -> None:
        self._skip.set()

    @property
    def is_interrupted(self) -> bool:
        return self._interrupt.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise JobInterrupted or BatchSkipped if asked; a skip is consumed when raised."""
        if self._interrupt.is_set():
            raise JobInterrupted("interrupted")
        if self._skip.is_set():
            self._skip.clear()
            raise BatchSkipped("skipped")


@dataclass(frozen=True)
class ProgressUpdate:
    """Where a job stands after a completed sampling step.

    ``latents`` is a reference to the live tensor (B, 4, H/8, W/8); turning it into a preview
    image is left to whoever wants one (see ``modules.processing.sampling.preview``), so progress
    reporting costs nothing when nobody watches.
    """

    job_id: str
    batch_index: int
    batch_count: int
    step: int
    total_steps: int
    elapsed_s: float
    latents: torch.Tensor = field(repr=False)
    family: str = "sd15"

    @property
    def fraction(self) -> float:
        """Overall progress in 0..1 over all batches (A1111's formula)."""
        return (self.batch_index + self.step / self.total_steps) / self.batch_count

    @property
    def eta_s(self) -> float:
        """A1111's estimate from this update alone: elapsed / progress - elapsed.

        Far too high early on (the first step includes loading the model); what a job's status
        shows comes from the pace between steps instead (``modules.processing.sampling.eta``).
        """
        fraction = self.fraction
        return self.elapsed_s / fraction - self.elapsed_s if fraction > 0 else float("inf")


ProgressCallback = Callable[[ProgressUpdate], None]


@dataclass
class Job:
    """A request being run. Create one per click / API call / CLI invocation."""

    request: Any
    hooks: Sequence[StepHook] = ()
    on_progress: ProgressCallback | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: CancelToken = field(default_factory=CancelToken)
    started_at: float = field(default_factory=time.monotonic)
    # The user scripts chosen for this job (``modules.extensions.runner.JobScripts``); the
    # studio runs them around the engine, which never looks at them.
    scripts: Any = None
    # Whether to save the images (A1111's API ``save_images``); None follows the settings.
    save: bool | None = None
    # Whether the studio may make A1111's batch grid (A1111's ``do_not_save_grid`` inverted; its
    # API turns it off unless ``save_images`` is true).
    grid: bool = True
    # What the tolerant API reader ignored in the submission (unknown fields, options with no
    # effect here), reported back to the client with the result.
    warnings: tuple[str, ...] = ()
    # What the submission asked for that this studio does not do (``restore_faces``, a style
    # that does not exist): the job runs without it, and these join the result's notices.
    notices: tuple[str, ...] = ()
    # A1111 options the submission overrides for this job alone (``override_settings``) that
    # decide how the studio saves and encodes its images; the engine never looks at them.
    output_overrides: Mapping[str, Any] = field(default_factory=dict)
    # The API field that named each model of the request ("checkpoint" ->
    # "override_settings.sd_model_checkpoint"), so a model that fails to load is reported
    # against the field the client wrote.
    model_fields: Mapping[str, str] = field(default_factory=dict)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at
