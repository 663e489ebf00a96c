"""A1111 ``/sdapi/v1/img2img`` payloads to ``Img2ImgRequest``s.

A1111's API defaults differ from its UI's, and existing clients rely on them: masked content
``fill`` (``inpainting_fill`` 0), "Only masked" (``inpaint_full_res`` true) with 0 px padding.
Integers select from A1111's lists (``resize_mode``, ``inpainting_fill``); names are accepted too.
``script_name`` may name one of the outpainting scripts, with A1111's positional
``script_args`` (or an object of the same names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from modules.processing.editing.image_ops import RESIZE_MODES
from modules.processing.editing.img2img_request import MASKED_CONTENT, Img2ImgRequest
from modules.processing.editing.outpainting import OUTPAINT_SCRIPTS, apply_outpaint_script
from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields import TXT2IMG_API_FIELDS, TXT2IMG_ONLY_FIELDS, txt2img_fields
from modules.processing.intake.image_input import PixelBudget, decode_base64_image

__all__ = ["API_DEFAULTS", "IMG2IMG_API_FIELDS", "img2img_request_from_api"]

#: A1111's API defaults (``StableDiffusionProcessingImg2Img``), ours where they differ.
API_DEFAULTS: Mapping[str, Any] = {
    "masked_content": "fill", "inpaint_only_masked": True, "only_masked_padding": 0, "mask_blur_x": 4,
    "mask_blur_y": 4, "strength": 0.75, "resize_mode": RESIZE_MODES[0],
}
# Accepted and ignored: image CFG only matters to instruct-pix2pix checkpoints, which the loader
# does not take yet; the others only change what the response carries or mean "off".
_IGNORED = {"image_cfg_scale", "include_init_images", "mask_round", "latent_mask"}
_HANDLED = frozenset({"init_images", "mask", "denoising_strength", "resize_mode", "mask_blur", "mask_blur_x",
                      "mask_blur_y", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
                      "inpainting_mask_invert", "initial_noise_multiplier", "script_name", "script_args", *_IGNORED})
#: Every field of A1111's ``/sdapi/v1/img2img`` this reader knows (txt2img-only ones are unknown here).
IMG2IMG_API_FIELDS: frozenset[str] = (TXT2IMG_API_FIELDS - TXT2IMG_ONLY_FIELDS) | _HANDLED


def _image(value: Any, field: str) -> Image.Image:
    return value if isinstance(value, Image.Image) else decode_base64_image(value, field)


def _choice(value: Any, field: str, choices: Sequence[str]) -> str:
    """An A1111 list index (0, 1, ...) or the choice's own name."""
    if isinstance(value, str) and value in choices:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    options = ", ".join(f"{i} ({name})" for i, name in enumerate(choices))
    raise RequestValidationError(field, f"must be one of {options}; got {value!r}")


def _flag(value: Any, field: str) -> bool:
    """A1111 clients send these as booleans or as 0/1."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise RequestValidationError(field, f"must be true/false or 0/1, got {value!r}")


def _image_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    images = payload.get("init_images")
    if not isinstance(images, (list, tuple)) or not images:
        raise RequestValidationError("init_images", "must be a list of at least one base64 image")
    budget = PixelBudget()
    fields: dict[str, Any] = {"init_images": tuple(budget.take(_image(v, "init_images"), "init_images")
                                                   for v in images)}
    if payload.get("mask") is not None:
        fields["mask"] = budget.take(_image(payload["mask"], "mask"), "mask")
    return fields


def img2img_request_from_api(payload: Mapping[str, Any], **extra: Any) -> Img2ImgRequest:
    """Build an ``Img2ImgRequest`` from an A1111 ``/sdapi/v1/img2img`` style payload.

    Raises:
        RequestValidationError: naming the offending field (A1111's name).
    """
    fields = {**API_DEFAULTS, **extra, **txt2img_fields(payload, "img2img", _HANDLED | TXT2IMG_ONLY_FIELDS),
              **_image_fields(payload)}
    given = {key: value for key, value in payload.items() if value is not None}
    if "denoising_strength" in given:
        fields["strength"] = given["denoising_strength"]
    if "resize_mode" in given:
        fields["resize_mode"] = _choice(given["resize_mode"], "resize_mode", RESIZE_MODES)
    if "inpainting_fill" in given:
        fields["masked_content"] = _choice(given["inpainting_fill"], "inpainting_fill", MASKED_CONTENT)
    if "mask_blur" in given:
        fields["mask_blur_x"] = fields["mask_blur_y"] = given["mask_blur"]
    for key in ("mask_blur_x", "mask_blur_y"):
        if key in given:
            fields[key] = given[key]
    if "inpaint_full_res" in given:
        fields["inpaint_only_masked"] = _flag(given["inpaint_full_res"], "inpaint_full_res")
    if "initial_noise_multiplier" in given:
        fields["initial_noise_multiplier"] = given["initial_noise_multiplier"]
    if "inpaint_full_res_padding" in given:
        fields["only_masked_padding"] = given["inpaint_full_res_padding"]
    if "inpainting_mask_invert" in given:
        fields["inpaint_not_masked"] = _flag(given["inpainting_mask_invert"], "inpainting_mask_invert")
    request = Img2ImgRequest(**fields)
    script = given.get("script_name") or ""
    if not script:
        return request
    titles = {title.lower(): title for title in OUTPAINT_SCRIPTS}  # A1111 matches titles case-blind
    if script.lower() not in titles:
        raise RequestValidationError("script_name", f"no img2img script {script!r}; available: "
                                                    f"{', '.join(OUTPAINT_SCRIPTS)}")
    return apply_outpaint_script(request, titles[script.lower()], given.get("script_args") or [])
