"""What a failed job tells its client: the request's mistakes in full (422), the set-up's broken
model (503), and for a fault of the server only a generic sentence (500); the log has the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.models.files import ModelFileError
from modules.models.registry import ModelNotFoundError
from modules.processing.errors import ModelUnavailableError, RequestValidationError
from modules.processing.jobs.job import Job
from modules.processing.jobs.queue import SERVER_FAULT, JobQueue, classify_failure


@pytest.mark.parametrize(("error", "kind", "message"), [
    (RequestValidationError("override_settings.sd_vae", "no VAE named 'x'"), "invalid_request",
     "override_settings.sd_vae: no VAE named 'x'"),
    (ModelFileError(Path("/srv/data/models/ESRGAN/up.safetensors"), "lfs_pointer", "is a git-lfs pointer"),
     "invalid_request", "the model file up.safetensors: is a git-lfs pointer"),
    (ModelNotFoundError("no checkpoint named 'x' in models/Stable-diffusion"), "invalid_request",
     "no checkpoint named 'x' in models/Stable-diffusion"),
    (ModelUnavailableError("sd_model_checkpoint (the server's setting): broken"), "unavailable",
     "sd_model_checkpoint (the server's setting): broken"),
    (RuntimeError("CUDA out of memory at /srv/data/x"), "server", "RuntimeError: CUDA out of memory at /srv/data/x"),
])
def test_failures_are_classified_by_whose_mistake_they_are(error: Exception, kind: str, message: str) -> None:
    assert classify_failure(error) == (kind, message)


def _failed(error: Exception):
    def run(job: Job) -> None:
        raise error

    with JobQueue(run) as queue:
        return queue.wait(queue.submit(Job(request=None)), timeout=30)


def test_a_server_fault_shows_clients_only_a_generic_message() -> None:
    status = _failed(RuntimeError("boom in /srv/data/models/secret.safetensors"))
    assert status.state == "failed" and status.error_kind == "server"
    assert status.error == "RuntimeError: boom in /srv/data/models/secret.safetensors"  # for the log and tests
    assert status.public_error == SERVER_FAULT


def test_a_model_the_request_named_is_its_own_mistake_in_full_but_without_the_path() -> None:
    status = _failed(ModelFileError(Path("/srv/data/models/VAE/bad.safetensors"), "unsupported", "is not a VAE"))
    assert status.error_kind == "invalid_request"
    assert status.public_error == "the model file bad.safetensors: is not a VAE"
