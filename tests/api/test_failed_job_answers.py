"""The HTTP status of a failed job follows whose mistake it was (no server needed)."""

from __future__ import annotations

import pytest

from modules.api.jobs import failed_job_error
from modules.processing.jobs.queue import SERVER_FAULT, JobStatus


@pytest.mark.parametrize(("kind", "code"), [("invalid_request", 422), ("unavailable", 503), ("server", 500)])
def test_failed_jobs_answer_by_kind(kind: str, code: int) -> None:
    status = JobStatus("j1", "failed", None, error="sd_vae: no VAE named 'x' at /srv/secret", error_kind=kind)
    answer = failed_job_error(status)
    assert answer.status_code == code
    if kind == "server":
        assert answer.detail == SERVER_FAULT and "/srv" not in answer.detail
    else:
        assert answer.detail == status.error
