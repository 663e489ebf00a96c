"""Typed errors of the processing layer. Callers map them to exit codes, HTTP 4xx or UI messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from modules.storage import is_no_space, no_space_message


class ProcessingError(Exception):
    """Base class of every error the engine raises on purpose."""


class RequestValidationError(ProcessingError, ValueError):
    """A request field has an invalid value. ``field`` names it with the A1111 API name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelUnavailableError(ProcessingError):
    """A model the server's own settings chose (not the request) cannot be used: the server is
    set up wrong, not the client. The message names the model, never its path."""


class JobInterrupted(ProcessingError):
    """The job's cancel token was interrupted; raised inside the loop, caught by the runner."""


class DenoiseInterrupted(JobInterrupted):
    """Interrupted in the middle of a denoising pass. ``latents`` (B, C, h, w) is the last step's
    estimate of the clean latents (A1111 returns that image, partly denoised, on interrupt)."""

    def __init__(self, latents: object) -> None:
        super().__init__("interrupted")
        self.latents = latents


class BatchSkipped(ProcessingError):
    """The job's cancel token asked to skip the batch that is being denoised."""


class StorageFullError(ProcessingError, OSError):
    """A write failed because the disk, a quota or a file-size limit left no room (see
    ``modules.storage.is_no_space``). The message says what could not be written and never
    names a path; the API answers it with 507. Being an ``OSError`` too, code that already
    handles failed writes keeps handling it."""

    #: What a job that failed with this error records as its ``error_code``.
    code = "storage_full"

    def __init__(self, what: str) -> None:
        super().__init__(no_space_message(what))
        self.what = what

    def __str__(self) -> str:
        return str(self.args[0])


@contextmanager
def no_space_as_storage_full(what: str) -> Iterator[None]:
    """Turn a "no space" failure inside the block into ``StorageFullError(what)``; any other
    error passes through unchanged."""
    try:
        yield
    except StorageFullError:
        raise
    except Exception as error:
        if is_no_space(error):
            raise StorageFullError(what) from error
        raise
