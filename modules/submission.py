"""Reading an A1111 payload as a tolerant reader, before the request is built.

Every front end's payload (REST, job API, gradio_client, the UI, the CLI's JSON) passes here
once: unknown fields and option keys become ``warnings`` (the payload runs without them), known
fields asking for what this studio does not do become ``notices`` (ditto: ``restore_faces``, a
missing style), and known fields with bad values raise ``RequestValidationError`` naming them.
The settings fill what the payload leaves out, and ``override_settings`` may change them for
this job only; the stored settings never change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modules.a1111_options import A1111_OPTION_DEFAULTS, A1111_RESTRICTED_OPTIONS
from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields import OVERRIDE_FIELDS, payload_notices, unknown_fields
from modules.processing.intake.json_values import check_json_values
from modules.processing.output.image_formats import ImageFormat
from modules.processing.output.request_infotext import apply_payload_infotext
from modules.processing.prompts.styles import StyleStore, apply_payload_styles
from modules.settings import FOLDER_SETTINGS, SETTINGS_BY_KEY, Settings, coerce_setting

__all__ = ["OUTPUT_OVERRIDES", "Submission", "image_format", "read_submission", "setting_defaults"]

#: Options ``override_settings`` may change for one job that decide how its images are saved.
OUTPUT_OVERRIDES: frozenset[str] = frozenset({"samples_format", "jpeg_quality", "webp_lossless", "enable_pnginfo",
                                              "samples_save", "grid_save", "save_to_dirs"})
# Options a job reads itself: the request fields they fill (``eta_ddim`` is DDIM's eta).
_REQUEST_OPTIONS = frozenset({*OVERRIDE_FIELDS, "eta_ddim"})


@dataclass(frozen=True)
class Submission:
    """A payload ready to become a request, and what the reader noted on the way."""

    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    #: Output options this job overrides (``OUTPUT_OVERRIDES`` keys, checked values).
    output_overrides: Mapping[str, Any] = field(default_factory=dict)


def _override_warning(key: str, extension_settings: frozenset[str]) -> str:
    if key in FOLDER_SETTINGS or key in A1111_RESTRICTED_OPTIONS:
        return f"override_settings.{key}: folder settings are not settable over the API; ignored"
    if key in SETTINGS_BY_KEY or key in A1111_OPTION_DEFAULTS or key in extension_settings:
        return f"override_settings.{key}: has no effect on a single job here; ignored"
    return f"override_settings.{key}: not an option of A1111 or this studio; ignored"


def _read_overrides(overrides: Any, extension_settings: frozenset[str]) -> tuple[dict[str, Any], list[str]]:
    """The output options ``override_settings`` sets (checked), and a warning per key it ignores."""
    if overrides is None:
        return {}, []
    if not isinstance(overrides, Mapping):
        raise RequestValidationError("override_settings", "must be an object")
    output: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in overrides.items():
        if key in _REQUEST_OPTIONS:
            continue
        if key in OUTPUT_OVERRIDES:
            try:
                output[key] = coerce_setting(key, value)
            except ValueError as error:
                raise RequestValidationError(f"override_settings.{key}", str(error)) from None
        else:
            warnings.append(_override_warning(str(key), extension_settings))
    return output, warnings


def read_submission(payload: Any, known_fields: frozenset[str], kind: str, styles: StyleStore,
                    extension_settings: frozenset[str] = frozenset()) -> Submission:
    """Read an A1111 ``kind`` ("txt2img", "img2img") payload: its ``infotext`` and ``styles``
    applied, unknown fields and options reported, output overrides checked.

    Raises:
        RequestValidationError: the payload is not an object, a known field is malformed, or
            any field holds text with a lone surrogate or a NaN/Infinity number.
    """
    if not isinstance(payload, Mapping):
        raise RequestValidationError("payload", f"a {kind} payload must be a JSON object")
    check_json_values(payload)
    warnings = unknown_fields(payload, known_fields, kind)
    expanded = apply_payload_infotext(payload)
    output, override_warnings = _read_overrides(expanded.get("override_settings"), extension_settings)
    expanded, style_notices = apply_payload_styles(expanded, styles)
    return Submission(expanded, (*warnings, *override_warnings), (*payload_notices(expanded), *style_notices),
                      output)


def setting_defaults(payload: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Request fields that the settings fill when the payload (and its overrides) leave them out."""
    overrides = payload.get("override_settings") or {}
    defaults: dict[str, Any] = {
        field_name: getattr(settings, key) for key, field_name in OVERRIDE_FIELDS.items()
        if key not in overrides and key not in ("sd_model_checkpoint", "sd_vae", "forge_additional_modules")
        # the studio resolves those (each job's model)
    }
    if payload.get("eta") is None and "eta_ddim" not in overrides and settings.eta_ddim:
        defaults["eta"] = settings.eta_ddim  # A1111 "Eta for DDIM"; only DDIM uses it
    return defaults


def image_format(settings: Settings, overrides: Mapping[str, Any] | None = None) -> ImageFormat:
    """The image file format of the settings, with a job's output overrides applied."""
    effective = dataclasses.replace(settings, **{k: v for k, v in (overrides or {}).items() if k in OUTPUT_OVERRIDES})
    return ImageFormat(effective.samples_format, effective.jpeg_quality, effective.webp_lossless)
