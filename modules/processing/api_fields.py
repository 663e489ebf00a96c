"""A1111 API field names to requests: the one translation used by the CLI's JSON input and
the REST API, so an existing A1111 client's payload means the same thing everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modules.processing.errors import RequestValidationError
from modules.processing.hires import HiresFix
from modules.processing.requests import Txt2ImgRequest

__all__ = ["HIRES_FIELDS", "hires_from_api", "txt2img_fields", "txt2img_request_from_api"]

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
    "restore_faces": (False, None),
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
        elif key == "sampler_index" and isinstance(value, str) and value and payload.get("sampler_name") is None:
            fields["sampler_name"] = value  # A1111: ``sampler_name or sampler_index`` (old clients send only this)
        elif key in ("sd_model_checkpoint", "model"):
            fields["checkpoint"] = value
        elif key in _IGNORED_WHEN:
            allowed = _IGNORED_WHEN[key]
            if allowed is not None and value not in allowed:
                raise RequestValidationError(key, "is not supported yet")
        else:
            raise RequestValidationError(key, f"is not a known {kind} field")
    return fields


# A1111's Hires. fix fields -> ``HiresFix`` fields (read only when ``enable_hr`` is true).
HIRES_FIELDS = {
    "hr_upscaler": "upscaler", "hr_scale": "scale", "hr_resize_x": "resize_x", "hr_resize_y": "resize_y",
    "hr_second_pass_steps": "steps", "denoising_strength": "denoising_strength", "hr_sampler_name": "sampler_name",
    "hr_scheduler": "scheduler", "hr_prompt": "prompt", "hr_negative_prompt": "negative_prompt",
}
# What A1111 clients send to mean "as the first pass".
_SAME_AS_FIRST_PASS = (None, "", "Use same sampler", "Use same scheduler", "Use same checkpoint")


def hires_from_api(payload: Mapping[str, Any]) -> HiresFix | None:
    """The Hires. fix of a txt2img payload, or None when ``enable_hr`` is off.

    Raises:
        RequestValidationError: naming the offending ``hr_*`` field.
    """
    enabled = payload.get("enable_hr", False)
    if not isinstance(enabled, bool) and enabled is not None:
        raise RequestValidationError("enable_hr", f"must be true or false, got {enabled!r}")
    if not enabled:
        return None
    if payload.get("hr_checkpoint_name") not in _SAME_AS_FIRST_PASS:
        raise RequestValidationError("hr_checkpoint_name", "a second checkpoint for the hires pass is not "
                                                           "supported; use \"Use same checkpoint\"")
    fields = {}
    for key, name in HIRES_FIELDS.items():
        value = payload.get(key)
        if value in _SAME_AS_FIRST_PASS and name not in ("upscaler", "denoising_strength", "scale"):
            continue
        if value is not None:
            fields[name] = value
    return HiresFix(**fields)


def txt2img_request_from_api(payload: Mapping[str, Any], **extra: Any) -> Txt2ImgRequest:
    """Build a ``Txt2ImgRequest`` from an A1111 ``/sdapi/v1/txt2img`` style payload.

    Unknown fields are an error (a typo should not silently do nothing); A1111 fields that
    only matter to features not built yet are accepted when they hold their "off" value.

    Raises:
        RequestValidationError: naming the offending field.
    """
    hires_keys = frozenset({"enable_hr", "hr_checkpoint_name", "firstphase_width", "firstphase_height", *HIRES_FIELDS})
    fields = txt2img_fields(payload, "txt2img", hires_keys)
    fields["hires"] = hires_from_api(payload)
    fields.update(extra)
    return Txt2ImgRequest(**fields)
