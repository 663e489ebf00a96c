"""The progress line under Generate: steps, percentage and, once the pace is known, the ETA."""

from __future__ import annotations

from modules.processing.jobs.queue import JobStatus
from modules.ui.progress import progress_html


def _running(eta_s: float | None) -> str:
    return progress_html(JobStatus(job_id="j", state="running", position=0, step=1, total_steps=20,
                                   batch_count=1, fraction=0.05, eta_s=eta_s))


def test_the_eta_shows_once_the_job_has_one() -> None:
    assert "ETA 1:15" in _running(75.0)
    assert "ETA 0:02" in _running(1.9)


def test_no_eta_before_the_pace_is_known() -> None:
    """After the first step (which includes loading the model) there is no estimate, and no
    placeholder that looks like one."""
    text = _running(None)
    assert "step 1/20" in text and "5%" in text
    assert "ETA" not in text


def test_a_job_that_found_the_disk_full_says_so_in_words() -> None:
    from modules.processing.errors import StorageFullError

    message = str(StorageFullError("save the image"))
    text = progress_html(JobStatus(job_id="j", state="failed", position=None, error=message,
                                   error_kind=StorageFullError.code))
    assert "Failed: Not enough disk space to save the image" in text
    assert "Traceback" not in text and "Errno" not in text
