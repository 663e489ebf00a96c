"""The shape of A1111's generation responses: ``images``, ``parameters`` and the ``info`` JSON.

A1111 echoes the whole request model in ``parameters`` (every field, defaults included) and
describes the result in ``info`` (its ``Processed.js()``). Clients read both: ``webuiapi`` reads
``info["seed"]`` and ``info["infotexts"]``, scripts read ``width``, ``sd_model_hash``,
``job_timestamp``... The defaults below are A1111 1.10's request-model defaults; ``info`` adds
our ``job_id``, ``interrupted``, ``notices`` (what changed what ran) and ``warnings`` (what the
tolerant reader ignored).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from modules.processing.generation.txt2img import GenerationResult
from modules.processing.output.image_formats import PNG, ImageFormat, encode_base64
from modules.processing.output.infotext import VERSION, parse_infotext

__all__ = ["IMG2IMG_REQUEST_DEFAULTS", "TXT2IMG_REQUEST_DEFAULTS", "generation_response"]

_COMMON_DEFAULTS: Mapping[str, Any] = {
    "prompt": "", "negative_prompt": "", "styles": None, "seed": -1, "subseed": -1, "subseed_strength": 0,
    "seed_resize_from_h": -1, "seed_resize_from_w": -1, "sampler_name": None, "scheduler": None, "batch_size": 1,
    "n_iter": 1, "steps": 50, "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": None, "tiling": None,
    "do_not_save_samples": False, "do_not_save_grid": False, "eta": None, "denoising_strength": 0.75,
    "s_min_uncond": None, "s_churn": None, "s_tmax": None, "s_tmin": None, "s_noise": None,
    "override_settings": None, "override_settings_restore_afterwards": True, "refiner_checkpoint": None,
    "refiner_switch_at": None, "disable_extra_networks": False, "firstpass_image": None, "comments": None,
    "sampler_index": "Euler", "script_name": None, "script_args": [], "send_images": True, "save_images": False,
    "alwayson_scripts": {}, "force_task_id": None, "infotext": None,
}
#: Every field of A1111 1.10's txt2img request model, with its default.
TXT2IMG_REQUEST_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    **_COMMON_DEFAULTS, "enable_hr": False, "firstphase_width": 0, "firstphase_height": 0, "hr_scale": 2.0,
    "hr_upscaler": None, "hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0, "hr_checkpoint_name": None,
    "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "", "hr_negative_prompt": "",
})
#: Every field of A1111 1.10's img2img request model, with its default.
IMG2IMG_REQUEST_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    **{k: v for k, v in _COMMON_DEFAULTS.items() if k != "firstpass_image"}, "init_images": None,
    "resize_mode": 0, "image_cfg_scale": None, "mask": None, "mask_blur_x": 4, "mask_blur_y": 4, "mask_blur": None,
    "mask_round": True, "inpainting_fill": 0, "inpaint_full_res": True, "inpaint_full_res_padding": 0,
    "inpainting_mask_invert": 0, "initial_noise_multiplier": None, "latent_mask": None, "include_init_images": False,
})
# The infotext keys A1111 writes itself; every other key is one of its ``extra_generation_params``.
_BUILTIN_INFOTEXT_KEYS = frozenset({
    "Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed",
    "Face restoration", "Size", "Model hash", "Model", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip",
    "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG", "NGMS", "Tiling",
    "Version", "User",
})
_IMAGE_FIELDS = ("init_images", "mask", "firstpass_image", "latent_mask")


def _extra_generation_params(params: Mapping[str, str]) -> dict[str, str]:
    """The non-built-in keys of a parsed infotext (size halves such as ``Size-1`` left out)."""
    return {key: value for key, value in params.items()
            if key not in _BUILTIN_INFOTEXT_KEYS and key[-2:] not in ("-1", "-2")}


def _info(result: GenerationResult, payload: Mapping[str, Any], job_id: str,
          warnings: Sequence[str], started: dt.datetime) -> dict[str, Any]:
    """A1111's ``Processed.js()`` for ``result``, plus our own keys."""
    request = result.request
    # A1111's all_* lists are the images' own: a grid shown first (index_of_first_image) is not one.
    skip = result.index_of_first_image
    parsed = [parse_infotext(text) if text else {"Prompt": "", "Negative prompt": ""}
              for text in result.infotexts[skip:]]
    first = parsed[0] if parsed else {}
    seeds, subseeds = result.seeds[skip:] or [request.seed], result.subseeds[skip:] or [request.subseed]
    return {
        "prompt": request.prompt, "all_prompts": [p.get("Prompt", "") for p in parsed] or [request.prompt],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [p.get("Negative prompt", "") for p in parsed] or [request.negative_prompt],
        "seed": seeds[0], "all_seeds": list(seeds), "subseed": subseeds[0], "all_subseeds": list(subseeds),
        "subseed_strength": getattr(request, "subseed_strength", 0), "width": getattr(request, "width", None),
        "height": getattr(request, "height", None), "sampler_name": getattr(request, "sampler_name", None),
        "cfg_scale": getattr(request, "guidance_scale", None), "steps": getattr(request, "num_inference_steps", None),
        "batch_size": getattr(request, "batch_size", 1), "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": first.get("Model"), "sd_model_hash": first.get("Model hash"),
        "sd_vae_name": first.get("VAE"), "sd_vae_hash": first.get("VAE hash"),
        "seed_resize_from_w": getattr(request, "seed_resize_from_w", -1),
        "seed_resize_from_h": getattr(request, "seed_resize_from_h", -1),
        "denoising_strength": getattr(request, "strength", payload.get("denoising_strength")),
        "extra_generation_params": _extra_generation_params(first),
        "index_of_first_image": result.index_of_first_image, "infotexts": list(result.infotexts),
        "styles": list(payload.get("styles") or []), "job_timestamp": started.strftime("%Y%m%d%H%M%S"),
        "clip_skip": getattr(request, "clip_skip", 1), "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "job_id": job_id, "interrupted": result.interrupted, "notices": list(result.notices),
        "warnings": list(warnings),
    }


def generation_response(payload: Mapping[str, Any], result: GenerationResult, job_id: str, *,
                        defaults: Mapping[str, Any], warnings: Sequence[str] = (),
                        image_format: ImageFormat = PNG, started: dt.datetime | None = None) -> dict[str, Any]:
    """The body of A1111's ``/sdapi/v1/txt2img`` / ``img2img`` answer for a finished job.

    Images are base64 in ``image_format`` (A1111's ``samples_format``) with their infotext
    inside; ``send_images: false`` sends none. ``parameters`` is every request field, the
    client's values over A1111's ``defaults``, images blanked (they would double the answer).
    """
    images = [] if payload.get("send_images") is False else [
        encode_base64(image, info, image_format) for image, info in zip(result.images, result.infotexts, strict=True)]
    parameters = {**defaults, **payload}
    parameters.update({key: None for key in _IMAGE_FIELDS if key in parameters})
    info = _info(result, payload, job_id, warnings, started or dt.datetime.now())
    return {"images": images, "parameters": parameters, "info": json.dumps(info, ensure_ascii=False)}
