"""Typed errors of the processing layer. Callers map them to exit codes, HTTP 4xx or UI messages."""

from __future__ import annotations


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
