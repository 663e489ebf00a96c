"""Turning a job's status into what the page shows: a progress bar line and a live preview."""

from __future__ import annotations

import html

from PIL import Image

from modules.processing.jobs.queue import JobStatus
from modules.processing.sampling.preview import latents_to_preview

__all__ = ["progress_html", "preview_image"]


def _eta(seconds: float | None) -> str:
    """The line's " · ETA m:ss" part, or nothing while the job has no estimate yet (before its second step:
    the queue measures the pace from the first completed step, see ``modules.processing.sampling.eta``)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return ""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f" · ETA {minutes:d}:{secs:02d}"


def progress_html(status: JobStatus) -> str:
    """A small progress bar: queue position, or step/total with ETA, or the final state."""
    if status.state == "queued":
        text = f"Waiting in queue: position {status.position}"
        fraction = 0.0
    elif status.state == "running":
        text = (f"Batch {status.batch_index + 1}/{status.batch_count} · step {status.step}/{status.total_steps}"
                f" · {status.fraction * 100:.0f}%{_eta(status.eta_s)}")
        fraction = status.fraction
    else:
        text = {"done": "Done", "interrupted": "Interrupted", "cancelled": "Cancelled"}.get(status.state, "Failed")
        if status.public_error:  # a server fault's own text (paths, library output) is for the log
            text += f": {status.public_error}"
        fraction = 1.0 if status.state == "done" else status.fraction
    width = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="aigen-progress" data-state="{status.state}">'
            f'<div class="aigen-progress-bar" style="width:{width:.1f}%"></div>'
            f'<span class="aigen-progress-text">{html.escape(text)}</span></div>')


def preview_image(status: JobStatus) -> Image.Image | None:
    """Cheap preview of the first image of the running batch, or None before the first step."""
    if status.preview_latents is None:
        return None
    return latents_to_preview(status.preview_latents, status.family or "sd15").resize(
        (status.preview_latents.shape[-1] * 8, status.preview_latents.shape[-2] * 8), Image.Resampling.NEAREST
    )
