"""The models a request names, checked against the model folders before the job is queued.

A client names models, never paths: every checkpoint and VAE reference is a name looked up in
the model folders (``CheckpointRegistry.find``, ``find_vae``). A name that is not there, a
path, or a file that is listed but blocked (a refused pickle, a git-lfs pointer, a broken
download) is refused at submit time as a ``RequestValidationError`` naming the field that
named it. What only shows when the worker loads the file is turned into the same error by
``model_failure``, so the client gets a 422 either way; a model the server's own settings
chose that fails is the set-up's fault (``ModelUnavailableError``, a 503). No message holds a
server path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modules.families.base import ModelPartError
from modules.models.files import ModelFileError
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry, ModelNotFoundError
from modules.models.vae import AUTOMATIC, BUILTIN, find_vae, vae_problem
from modules.processing.errors import ModelUnavailableError, RequestValidationError

__all__ = ["MODEL_OPTIONS", "check_model_references", "is_checkpoint_failure", "model_failure", "model_fields",
           "part_failure"]

#: The request fields that name a model, and the A1111 option each comes from.
MODEL_OPTIONS: Mapping[str, str] = {"checkpoint": "sd_model_checkpoint", "vae": "sd_vae",
                                    "modules": "forge_additional_modules"}
_TOP_LEVEL = ("sd_model_checkpoint", "model")  # our top-level aliases of the checkpoint option


def model_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """The API field that names each model of ``payload`` (request field -> field name), as the
    request reader reads it: the later of ``override_settings`` and a top-level alias wins."""
    fields: dict[str, str] = {}
    for key, value in payload.items():
        if value is None:
            continue
        if key == "override_settings" and isinstance(value, Mapping):
            fields.update({name: f"override_settings.{option}" for name, option in MODEL_OPTIONS.items()
                           if value.get(option) is not None})
        elif key in _TOP_LEVEL:
            fields["checkpoint"] = key
    return fields


def check_model_references(payload: Mapping[str, Any], request: Any, registry: CheckpointRegistry,
                           vae_roots: list[Path]) -> dict[str, str]:
    """Refuse a request whose checkpoint or VAE is not a usable model in the folders; returns
    ``model_fields(payload)`` for the job.

    Raises:
        RequestValidationError: naming the field (``override_settings.sd_vae``, ...).
    """
    fields = model_fields(payload)
    if request.checkpoint:
        field = fields.get("checkpoint", "sd_model_checkpoint")
        try:
            info = registry.find(request.checkpoint)
        except ModelNotFoundError as error:
            raise RequestValidationError(field, str(error)) from None
        reason = registry.blocked(info)
        if reason is not None:
            raise RequestValidationError(field, f"the checkpoint {info.name!r} is blocked: {reason}")
    if request.vae not in (None, "", AUTOMATIC, BUILTIN):
        field = fields.get("vae", "sd_vae")
        try:
            vae = find_vae(request.vae, vae_roots)
        except ModelNotFoundError as error:
            raise RequestValidationError(field, str(error)) from None
        problem = vae_problem(vae)
        if problem is not None:
            raise RequestValidationError(field, f"the VAE {vae.name!r} is blocked: {problem}")
    return fields


def is_checkpoint_failure(error: Exception, checkpoint: str | None, models: ModelManager) -> bool:
    """Whether loading a job's models failed on its checkpoint (else on its VAE): the error is
    about a file of the checkpoint list, or the checkpoint reference does not resolve."""
    if isinstance(error, ModelFileError):
        failed = error.path.resolve()
        return any(info.path.resolve() == failed for info in models.registry.items)
    try:
        models.resolve(checkpoint)
    except LookupError:
        return True
    return False


def model_failure(error: ModelFileError | ModelNotFoundError, request: Any, is_checkpoint: bool,
                  fields: Mapping[str, str]) -> Exception:
    """The error to report when loading a request's models failed with ``error``, on its
    checkpoint (``is_checkpoint``) or its VAE. Named by the request: a ``RequestValidationError``
    on the field that named it; chosen by the settings: a ``ModelUnavailableError``.
    """
    request_field = "checkpoint" if is_checkpoint else "vae"
    named = getattr(request, request_field, None)
    what = "checkpoint" if is_checkpoint else "VAE"
    message = f"the {what} {error.public_message}" if isinstance(error, ModelFileError) else str(error)
    if named in (None, "") or (not is_checkpoint and named == AUTOMATIC):
        option = MODEL_OPTIONS[request_field]
        return ModelUnavailableError(f"{option} (the server's setting): {message}")
    return RequestValidationError(fields.get(request_field, MODEL_OPTIONS[request_field]), message)


def part_failure(error: ModelPartError, request: Any, checkpoint: str, fields: Mapping[str, str]) -> Exception:
    """The error to report when a part of the job's model (FLUX.1's T5, its VAE) is missing,
    ambiguous or unusable: on the field that chose the parts, else on the field that named the
    checkpoint, else (both from the settings) a ``ModelUnavailableError``. The message names
    the file to put and the folder, or the files to choose from; from the settings, it names the
    parts' setting, since choosing the parts is what mends it."""
    message = f"the checkpoint {checkpoint!r} cannot run: {error}"
    for request_field in ("modules", "checkpoint"):
        if getattr(request, request_field, None):
            return RequestValidationError(fields.get(request_field, MODEL_OPTIONS[request_field]), message)
    return ModelUnavailableError(f"{MODEL_OPTIONS['modules']} (the server's setting): {message}")
