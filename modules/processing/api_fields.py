"""A1111 API field names to requests: the one translation used by the CLI's JSON input and
the REST API, so an existing A1111 client's payload means the same thing everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modules.processing.errors import RequestValidationError
from modules.processing.requests import Txt2ImgRequest

__all__ = ["txt2img_fields", "txt2img_request_from_api"]

# A1111 name -> our field name, for fields with a direct counterpart.
_RENAMED = {
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "n_iter": "batch_count",
}
_SAME = (
    "prompt", "negative_prompt", "sampler_name", "scheduler", "seed", "subseed", "subseed_strength",
    "seed_resize_from_w", "seed_resize_from_h", "width", "height", "batch_size", "tiling", "eta",
)
# Accepted for compatibility with A1111 clients and ignored: they only affect how results are
# returned or are features of later issues, and these values mean "off".
_IGNORED_WHEN = {
    "send_images": None, "save_images": None, "do_not_save_samples": None, "do_not_save_grid": None,
    "sampler_index": None, "override_settings_restore_afterwards": None, "force_task_id": None,
    "restore_faces": (False, None), "enable_hr": (False, None), "denoising_strength": None,
    "styles": ([], None), "script_name": (None, ""), "script_args": ([], None), "alwayson_scripts": ({}, None),
    "s_min_uncond": None, "s_churn": None, "s_tmax": None, "s_tmin": None, "s_noise": None, "comments": None,
    "disable_extra_networks": None, "infotext": (None, ""), "refiner_checkpoint": (None, ""),
    "refiner_switch_at": None,
}


def _override_settings(value: Any, fields: dict[str, Any]) -> None:
    if not isinstance(value, Mapping):
        raise RequestValidationError("override_settings", "must be an object")
    for key, setting in value.items():
        if key == "sd_model_checkpoint":
            fields["checkpoint"] = setting
        elif key == "sd_vae":
            fields["vae"] = setting
        elif key == "CLIP_stop_at_last_layers":
            fields["clip_skip"] = setting
        elif key == "emphasis":
            fields["emphasis"] = setting
        else:
            raise RequestValidationError(f"override_settings.{key}", "is not a setting that can be overridden here")


def txt2img_fields(payload: Mapping[str, Any], kind: str, handled: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Our field values from the txt2img part of an A1111 payload; keys in ``handled`` are skipped
    (the caller translates them). ``kind`` names the endpoint in the unknown-field error."""
    if not isinstance(payload, Mapping):
        raise RequestValidationError("payload", "must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in payload.items():
        if key in handled or (value is None and (key in _RENAMED or key in _SAME)):
            continue  # A1111 clients send null for "use the default"
        if key in _RENAMED:
            fields[_RENAMED[key]] = value
        elif key in _SAME:
            fields[key] = value
        elif key == "override_settings":
            _override_settings(value, fields)
        elif key in ("sd_model_checkpoint", "model"):
            fields["checkpoint"] = value
        elif key in _IGNORED_WHEN:
            allowed = _IGNORED_WHEN[key]
            if allowed is not None and value not in allowed:
                raise RequestValidationError(key, "is not supported yet")
        else:
            raise RequestValidationError(key, f"is not a known {kind} field")
    return fields


def txt2img_request_from_api(payload: Mapping[str, Any], **extra: Any) -> Txt2ImgRequest:
    """Build a ``Txt2ImgRequest`` from an A1111 ``/sdapi/v1/txt2img`` style payload.

    Unknown fields are an error (a typo should not silently do nothing); A1111 fields that
    only matter to features not built yet are accepted when they hold their "off" value.

    Raises:
        RequestValidationError: naming the offending field.
    """
    fields = txt2img_fields(payload, "txt2img")
    fields.update(extra)
    return Txt2ImgRequest(**fields)
