"""A1111 API field names to requests: the one translation used by the CLI's JSON input and
the REST API, so an existing A1111 client's payload means the same thing everywhere.

The reader is tolerant, as A1111's own (pydantic's default) is: a field it does not know is
ignored, and ``unknown_fields`` says which, so the caller can report them; a field it knows is
checked strictly, and a bad value raises ``RequestValidationError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from modules.processing.errors import RequestValidationError
from modules.processing.generation.hires import HiresFix
from modules.processing.requests import Txt2ImgRequest

__all__ = ["HIRES_FIELDS", "OVERRIDE_FIELDS", "TXT2IMG_API_FIELDS", "TXT2IMG_ONLY_FIELDS", "hires_from_api",
           "payload_notices", "txt2img_fields", "txt2img_request_from_api", "unknown_fields"]

# A1111 name -> our field name, for fields with a direct counterpart.
_RENAMED = {
    "steps": "num_inference_steps",
    "cfg_scale": "guidance_scale",
    "n_iter": "batch_count",
}
_SAME = (
    "prompt", "negative_prompt", "sampler_name", "scheduler", "seed", "subseed", "subseed_strength",
    "seed_resize_from_w", "seed_resize_from_h", "width", "height", "batch_size", "tiling", "eta",
    "distilled_cfg_scale",  # Forge's field (FLUX.1-dev); null = the model family's default
)
_NUMBER = (int, float)
# A1111 fields that change nothing here (how results are returned, sampler fine-tuning that
# diffusers' schedulers do not take, legacy sizes), with the type a value must have to be accepted.
_ACCEPTED: Mapping[str, type | tuple[type, ...]] = MappingProxyType({
    "send_images": bool, "save_images": bool, "do_not_save_samples": bool, "do_not_save_grid": bool,
    "override_settings_restore_afterwards": bool, "restore_faces": bool, "disable_extra_networks": bool,
    "sampler_index": str, "force_task_id": str, "comments": dict,
    "s_min_uncond": _NUMBER, "s_churn": _NUMBER, "s_tmax": _NUMBER, "s_tmin": _NUMBER, "s_noise": _NUMBER,
    "refiner_switch_at": _NUMBER, "firstphase_width": int, "firstphase_height": int,
})
# Known fields whose feature is not here: any value other than these is refused by name,
# since the image would not be what the client asked for.
_UNSUPPORTED_UNLESS: Mapping[str, tuple[Any, ...]] = MappingProxyType({
    "refiner_checkpoint": (None, "", "None"), "firstpass_image": (None, ""),
})
#: A1111 option keys ``override_settings`` may set that change the request itself, and the
#: request field each sets. (Output options, such as ``samples_format``, are the studio's.)
OVERRIDE_FIELDS: Mapping[str, str] = MappingProxyType({
    "sd_model_checkpoint": "checkpoint", "sd_vae": "vae", "CLIP_stop_at_last_layers": "clip_skip",
    "emphasis": "emphasis", "eta_noise_seed_delta": "eta_noise_seed_delta", "randn_source": "randn_source",
    "forge_additional_modules": "modules",
})

# A1111's Hires. fix fields -> ``HiresFix`` fields (read only when ``enable_hr`` is true).
HIRES_FIELDS = {
    "hr_upscaler": "upscaler", "hr_scale": "scale", "hr_resize_x": "resize_x", "hr_resize_y": "resize_y",
    "hr_second_pass_steps": "steps", "denoising_strength": "denoising_strength", "hr_sampler_name": "sampler_name",
    "hr_scheduler": "scheduler", "hr_prompt": "prompt", "hr_negative_prompt": "negative_prompt",
    "hr_cfg": "guidance_scale", "hr_distilled_cfg": "distilled_cfg_scale",  # Forge's
}
#: Hires guidance fields where 0 also means "the first pass's" (CFG below 1 cannot run, and the
#: UI's sliders start at 0 for "use same").
_ZERO_IS_SAME = frozenset({"guidance_scale", "distilled_cfg_scale"})
_HIRES_KEYS = frozenset({"enable_hr", "hr_checkpoint_name", "hr_additional_modules", *HIRES_FIELDS})
#: Fields of A1111's txt2img API that its img2img API does not have.
TXT2IMG_ONLY_FIELDS: frozenset[str] = (_HIRES_KEYS - {"denoising_strength"}) | {
    "firstphase_width", "firstphase_height", "firstpass_image"}
#: Fields read by the studio before the request is built (scripts, styles, infotext).
_STUDIO_FIELDS = frozenset({"styles", "script_name", "script_args", "alwayson_scripts", "infotext"})
#: Every field of A1111's ``/sdapi/v1/txt2img`` this reader knows (plus our top-level
#: ``sd_model_checkpoint`` / ``model``, which name the checkpoint).
TXT2IMG_API_FIELDS: frozenset[str] = frozenset({
    *_RENAMED, *_SAME, *_ACCEPTED, *_UNSUPPORTED_UNLESS, *_HIRES_KEYS, *_STUDIO_FIELDS,
    "override_settings", "sd_model_checkpoint", "model",
})


def unknown_fields(payload: Mapping[str, Any], known: frozenset[str], kind: str) -> list[str]:
    """One warning per field of ``payload`` that is not in ``known`` (they are ignored)."""
    return [f"{key}: not a field of the {kind} API here; ignored" for key in payload if key not in known]


def payload_notices(payload: Mapping[str, Any]) -> list[str]:
    """Notices for known fields that ask for something this studio does not do; the job runs without it."""
    notices = []
    if payload.get("restore_faces") is True:
        notices.append("restore_faces: face restoration (GFPGAN/CodeFormer) is not installed here; "
                       "the images are not face-restored")
    if payload.get("disable_extra_networks") is True:
        notices.append("disable_extra_networks: not supported here; <lora:...> tags in the prompt were applied")
    return notices


def _check_accepted(key: str, value: Any) -> None:
    kind = _ACCEPTED[key]
    is_bool = isinstance(value, bool)
    wrong = not isinstance(value, kind) or (is_bool and kind is not bool) or (
        isinstance(value, float) and not math.isfinite(value))
    if wrong:
        names = {bool: "true or false", str: "a string", dict: "an object", int: "a whole number"}
        expected = names.get(kind, "a number") if isinstance(kind, type) else "a number"
        raise RequestValidationError(key, f"must be {expected}, got {value!r}")


def _override_settings(value: Any, payload: Mapping[str, Any], fields: dict[str, Any]) -> None:
    """The request fields ``override_settings`` sets; other keys are the studio's to apply or report."""
    if not isinstance(value, Mapping):
        raise RequestValidationError("override_settings", "must be an object")
    for key, setting in value.items():
        if key in OVERRIDE_FIELDS:
            fields[OVERRIDE_FIELDS[key]] = setting
        elif key == "eta_ddim" and payload.get("eta") is None:  # A1111: an explicit eta wins
            fields["eta"] = setting


def txt2img_fields(payload: Mapping[str, Any], kind: str, handled: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Our field values from the txt2img part of an A1111 payload; keys in ``handled`` are skipped
    (the caller translates them), and so are unknown ones (see ``unknown_fields``). ``kind``
    names the endpoint in messages."""
    if not isinstance(payload, Mapping):
        raise RequestValidationError("payload", f"a {kind} payload must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in payload.items():
        if key in handled or value is None:
            continue  # A1111 clients send null for "use the default"
        if key in _RENAMED:
            fields[_RENAMED[key]] = value
        elif key in _SAME:
            fields[key] = value
        elif key == "override_settings":
            _override_settings(value, payload, fields)
        elif key in ("sd_model_checkpoint", "model"):
            fields["checkpoint"] = value
        elif key in _ACCEPTED:
            _check_accepted(key, value)
            if key == "sampler_index" and value and payload.get("sampler_name") is None:
                fields["sampler_name"] = value  # A1111: ``sampler_name or sampler_index`` (old clients send only this)
        elif key in _UNSUPPORTED_UNLESS and value not in _UNSUPPORTED_UNLESS[key]:
            raise RequestValidationError(key, "is not supported yet; leave it empty")
    return fields


# What A1111 clients send to mean "as the first pass".
_SAME_AS_FIRST_PASS = (None, "", "Use same sampler", "Use same scheduler", "Use same checkpoint")
#: Forge's ``hr_additional_modules`` values that keep the first pass's modules.
_SAME_MODULES = (None, [], ["Use same choices"], "Use same choices")


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
    if payload.get("hr_additional_modules") not in _SAME_MODULES:
        raise RequestValidationError("hr_additional_modules", "other VAE / text encoder files for the hires "
                                                              "pass are not supported; use \"Use same choices\"")
    fields = {}
    for key, name in HIRES_FIELDS.items():
        value = payload.get(key)
        if value in _SAME_AS_FIRST_PASS and name not in ("upscaler", "denoising_strength", "scale"):
            continue
        if name in _ZERO_IS_SAME and value == 0 and not isinstance(value, bool):
            continue
        if value is not None:
            fields[name] = value
    return HiresFix(**fields)


def txt2img_request_from_api(payload: Mapping[str, Any], **extra: Any) -> Txt2ImgRequest:
    """Build a ``Txt2ImgRequest`` from an A1111 ``/sdapi/v1/txt2img`` style payload.

    Unknown fields are skipped (``unknown_fields`` lists them for the caller to report); A1111
    fields that only matter to features not built yet are accepted when they hold their "off"
    value. ``extra`` (request field values from the settings) fills what the payload leaves out.

    Raises:
        RequestValidationError: naming the offending field.
    """
    fields = {**extra, **txt2img_fields(payload, "txt2img", _HIRES_KEYS)}
    fields["hires"] = hires_from_api(payload)
    return Txt2ImgRequest(**fields)
