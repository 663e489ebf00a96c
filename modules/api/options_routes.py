"""``GET``/``POST /sdapi/v1/options``: every A1111 option key, read and written as A1111 clients do.

``GET`` answers every key A1111 1.10 has: ours where this studio has the option, the stored
value of an A1111 key it only keeps (a client that wrote ``send_seed`` reads it back), extension
settings, and A1111's default for the rest. ``POST`` is a tolerant reader: our options and
extension settings are checked strictly (a bad value is a 422 naming the key, and then nothing
changes), A1111 keys we do not implement are stored and reported, and unknown keys are ignored
and reported; the answer lists what changed and the ``warnings``. Folder options stay out of
the API's reach (A1111's restricted options), so a remote client cannot redirect outputs.

An unreadable ``config.json`` does not change the answer's shape: A1111 clients read options as
one flat dict (and some post it back whole), so ``GET`` still answers every key, with the values
in use (the backup's or the defaults), and says what went wrong in the ``X-AIGen-Config-Error``
header (and in ``/health``'s ``config_error``). A write that finds the disk full is a 507.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException, Response

from modules.a1111_options import (
    A1111_API_RESTRICTED_OPTIONS,
    A1111_OPTION_DEFAULTS,
    A1111_RESTRICTED_OPTIONS,
    a1111_option_defaults,
)
from modules.models.vae import AUTOMATIC, BUILTIN, find_vae, vae_problem
from modules.settings import FOLDER_SETTINGS, SETTINGS_BY_KEY, coerce_setting

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["CONFIG_ERROR_HEADER", "add_options_routes", "current_options"]

logger = logging.getLogger(__name__)
#: Options that name a model: a name looked up in the model folders, never a path.
_MODEL_OPTIONS = ("sd_model_checkpoint", "sd_vae")

#: The response header of ``GET /options`` that says why ``config.json`` could not be used.
CONFIG_ERROR_HEADER = "X-AIGen-Config-Error"


def current_options(studio: Studio) -> dict[str, Any]:
    """Every option key with its value: A1111's defaults, overlaid by stored A1111 keys,
    extension settings and our own settings (the checkpoint as the title new jobs use)."""
    stored = {key: value for key, value in studio.store.extra().items() if key in A1111_OPTION_DEFAULTS}
    ours = {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(studio.settings).items()}
    ours["sd_model_checkpoint"] = ours["sd_model_checkpoint"] or studio.current_checkpoint()
    return {**a1111_option_defaults(), **stored, **studio.extension_setting_values(), **ours}


def _checked(studio: Studio, changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                                                   list[str]]:
    """Split ``changes`` into (our settings, extension settings, A1111-only keys to store), each
    value checked, and a warning per key ignored. Raises HTTP 422 naming the first bad key."""
    extension_specs = studio.extension_settings()
    ours: dict[str, Any] = {}
    extension: dict[str, Any] = {}
    a1111_only: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in changes.items():
        if key in FOLDER_SETTINGS or key in A1111_RESTRICTED_OPTIONS:
            raise HTTPException(422, f"{key}: folder settings are not settable over the API; change them in the "
                                     "Settings tab")
        if key in A1111_API_RESTRICTED_OPTIONS:  # A1111 leaves these unchanged over the API, silently
            warnings.append(f"{key}: not settable over the API; ignored")
            continue
        if key in _MODEL_OPTIONS and not isinstance(value, str):
            raise HTTPException(422, f"{key}: must be a model name (a string), got {type(value).__name__}")
        try:
            if key in SETTINGS_BY_KEY:  # models are looked up by name below, not read as values here
                ours[key] = value if key in _MODEL_OPTIONS else coerce_setting(key, value)
            elif key in extension_specs:
                extension[key] = extension_specs[key].coerce(value, key)
            elif key in A1111_OPTION_DEFAULTS:
                a1111_only[key] = value
                warnings.append(f"{key}: stored, but has no effect here (an A1111 option this studio does not use)")
            else:
                warnings.append(f"{key}: not an option of A1111 or this studio; ignored")
        except ValueError as error:
            raise HTTPException(422, f"{key}: {error}") from None
    return ours, extension, a1111_only, warnings


def add_options_routes(router: APIRouter, studio: Studio) -> None:
    """``GET`` and ``POST /options`` on ``router``."""

    @router.get("/options")
    def get_options(response: Response) -> dict[str, Any]:
        problem = studio.store.config_error
        if problem:  # headers are Latin-1, one line
            response.headers[CONFIG_ERROR_HEADER] = " ".join(problem.encode("ascii", "replace").decode().split())
        return current_options(studio)

    @router.post("/options")
    def set_options(changes: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        if not isinstance(changes, Mapping):
            raise HTTPException(422, "body: must be a JSON object of option keys and values")
        ours, extension, a1111_only, warnings = _checked(studio, changes)
        # Models by name only, looked up in the folders (the message shows no server path).
        if ours.get("sd_vae") not in (None, "", AUTOMATIC, BUILTIN):
            try:
                vae = find_vae(ours["sd_vae"], studio.context.models.vae_roots)
            except LookupError as error:
                raise HTTPException(422, f"sd_vae: {error}") from None
            problem = vae_problem(vae)  # stored, a broken VAE would fail every job after it
            if problem is not None:
                raise HTTPException(422, f"sd_vae: the VAE {vae.name!r} is blocked: {problem}")
        if "sd_model_checkpoint" in ours:
            try:
                ours["sd_model_checkpoint"] = studio.set_checkpoint(str(ours["sd_model_checkpoint"]))
            except LookupError as error:
                raise HTTPException(422, f"sd_model_checkpoint: {error}") from None
        problems = [*studio.update_settings(ours), *studio.update_extension_settings(extension)]
        if a1111_only:
            studio.store.set_extra(a1111_only)
        if problems:  # checked above, so only a failed write lands here
            raise HTTPException(500, "; ".join(problems))
        if warnings:
            logger.warning("POST /options: %s", "; ".join(warnings))
        return {"changed": sorted({*ours, *extension, *a1111_only}), "warnings": warnings}
