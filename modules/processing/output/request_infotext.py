"""Between requests and infotext: the A1111 key for each request field, both ways."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from types import MappingProxyType
from typing import Any

from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.errors import RequestValidationError
from modules.processing.generation.hires import HiresFix, hires_parameters
from modules.processing.output.infotext import VERSION, parse_infotext
from modules.processing.requests import DEFAULT_DISTILLED_CFG_SCALE, Txt2ImgRequest
from modules.processing.sampling.samplers import resolve_sampler

__all__ = ["INFOTEXT_SETTING_KEYS", "MODULE_KEY", "apply_payload_infotext", "img2img_parameters", "module_parameters",
           "modules_from_params", "request_from_infotext", "request_from_params", "txt2img_parameters",
           "txt2img_values_from_infotext"]


def txt2img_parameters(
    request: Txt2ImgRequest, seed: int, subseed: int, model_name: str | None, model_hash: str | None,
    vae_name: str | None = None, vae_hash: str | None = None, extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The infotext parameters of one image, in A1111's keys.

    ``extra`` holds the job's own keys (A1111 ``extra_generation_params``: "Lora hashes",
    "TI hashes"); they come after the built-in keys, before "Emphasis".

    ``seed``/``subseed`` are that image's own seeds. "Schedule type" records the schedule
    actually used, so "Automatic" on a k-diffusion sampler is written as its default.
    """
    spec, _ = resolve_sampler(request.sampler_name, request.scheduler, check_pairing=False)
    schedule = request.scheduler
    if schedule == "Automatic" and not spec.keeps_model_spacing:
        schedule = spec.default_schedule
    varied = request.subseed_strength > 0
    resized = request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0
    return {
        "Steps": request.num_inference_steps,
        "Sampler": request.sampler_name,
        "Schedule type": None if schedule == "Automatic" else schedule,
        "CFG scale": request.guidance_scale,
        "Distilled CFG Scale": request.distilled_cfg_scale,  # None (left out) unless the job has one
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        **(hires_parameters(request.hires, request.width, request.height) if request.hires else {}),
        "Variation seed": subseed if varied else None,
        "Variation seed strength": request.subseed_strength if varied else None,
        "Seed resize from": f"{request.seed_resize_from_w}x{request.seed_resize_from_h}" if resized else None,
        "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
        "ENSD": request.eta_noise_seed_delta if request.eta_noise_seed_delta and spec.uses_ensd else None,
        # A1111 writes the source only when it is not its default, "GPU".
        "RNG": request.randn_source if request.randn_source != "GPU" else None,
        "Tiling": "True" if request.tiling else None,
        "Eta": request.eta if request.eta is not None and spec.uses_eta else None,
        **(extra or {}),
        "Emphasis": request.emphasis if request.emphasis != "Original" else None,
        "Template": request.template or None,  # sd-dynamic-prompts' keys
        "Negative Template": request.negative_template or None,
        "Version": VERSION,
    }


def img2img_parameters(
    request: Img2ImgRequest, seed: int, subseed: int, model_name: str | None, model_hash: str | None,
    vae_name: str | None = None, vae_hash: str | None = None, extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """txt2img's parameters plus "Denoising strength" and, for inpainting, A1111's mask keys
    (``extra_generation_params``: they follow the built-in keys, before "Version")."""
    params = txt2img_parameters(request, seed, subseed, model_name, model_hash, vae_name, vae_hash, extra)
    version = params.pop("Version")
    params["Denoising strength"] = request.strength
    if request.initial_noise_multiplier != 1.0:
        params["Noise multiplier"] = request.initial_noise_multiplier
    if request.is_inpaint:
        if request.mask_blur_x == request.mask_blur_y:
            params["Mask blur"] = request.mask_blur_x
        else:
            params["Mask blur x"], params["Mask blur y"] = request.mask_blur_x, request.mask_blur_y
        params["Mask mode"] = "Inpaint not masked" if request.inpaint_not_masked else "Inpaint masked"
        params["Masked content"] = request.masked_content
        if request.inpaint_only_masked:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = request.only_masked_padding
    params["Version"] = version
    return params


def _number(params: dict[str, str], key: str, kind: type, default: Any) -> Any:
    if key not in params:
        return default
    try:
        return kind(float(params[key])) if kind is int else kind(params[key])
    except ValueError:
        raise RequestValidationError(key, f"is not a number: {params[key]!r}") from None


def request_from_infotext(text: str, **overrides: Any) -> Txt2ImgRequest:
    """Rebuild the request that produced an image from its infotext (ours or A1111's).

    Keys the infotext lacks keep the request defaults; ``overrides`` win over both. The
    checkpoint is chosen by "Model hash" when present, else by "Model".

    Raises:
        RequestValidationError: a value is malformed or out of range.
    """
    return request_from_params(parse_infotext(text), **overrides)


def request_from_params(params: Mapping[str, str], **overrides: Any) -> Txt2ImgRequest:
    """``request_from_infotext`` on an infotext already parsed (``parse_infotext``), e.g. one that
    extensions rewrote on paste."""
    fields: dict[str, Any] = {"prompt": params["Prompt"], "negative_prompt": params["Negative prompt"]}
    fields["num_inference_steps"] = _number(params, "Steps", int, 20)
    fields["sampler_name"] = params.get("Sampler", "DPM++ 2M")
    fields["scheduler"] = params.get("Schedule type", "Automatic")
    fields["guidance_scale"] = _number(params, "CFG scale", float, 7.0)
    fields["distilled_cfg_scale"] = _number(params, "Distilled CFG Scale", float, None)
    fields["seed"] = _number(params, "Seed", int, -1)
    fields["width"] = _number(params, "Size-1", int, 512)
    fields["height"] = _number(params, "Size-2", int, 512)
    fields["subseed"] = _number(params, "Variation seed", int, -1)
    fields["subseed_strength"] = _number(params, "Variation seed strength", float, 0.0)
    fields["seed_resize_from_w"] = _number(params, "Seed resize from-1", int, 0)
    fields["seed_resize_from_h"] = _number(params, "Seed resize from-2", int, 0)
    fields["clip_skip"] = _number(params, "Clip skip", int, 1)
    fields["tiling"] = params.get("Tiling", "False") == "True"
    if "ENSD" in params:
        fields["eta_noise_seed_delta"] = _number(params, "ENSD", int, 0)
    if "RNG" in params:
        fields["randn_source"] = params["RNG"]
    if "Eta" in params:
        fields["eta"] = _number(params, "Eta", float, None)
    if "Emphasis" in params:
        fields["emphasis"] = params["Emphasis"]
    model = params.get("Model hash") or params.get("Model")
    if model:
        fields["checkpoint"] = model
    if "VAE" in params:
        fields["vae"] = params["VAE"]
    if modules_from_params(params):
        fields["modules"] = modules_from_params(params)
    fields["hires"] = _hires_from_params(params)
    fields.update(overrides)
    return Txt2ImgRequest(**fields)


def _hires_from_params(params: Mapping[str, str]) -> HiresFix | None:
    """The Hires. fix an infotext records ("Hires upscale"/"Hires resize" and friends), or None."""
    if not any(key in params for key in ("Hires upscale", "Hires resize", "Hires upscaler")):
        return None
    fields: dict[str, Any] = {"upscaler": params.get("Hires upscaler", "Latent"),
                              "scale": _number(params, "Hires upscale", float, 2.0),
                              "resize_x": _number(params, "Hires resize-1", int, 0),
                              "resize_y": _number(params, "Hires resize-2", int, 0),
                              "steps": _number(params, "Hires steps", int, 0),
                              "denoising_strength": _number(params, "Denoising strength", float, 0.7),
                              "guidance_scale": _number(params, "Hires CFG Scale", float, None),
                              "distilled_cfg_scale": _number(params, "Hires Distilled CFG Scale", float, None)}
    for key, name in (("Hires sampler", "sampler_name"), ("Hires schedule type", "scheduler"),
                      ("Hires prompt", "prompt"), ("Hires negative prompt", "negative_prompt")):
        if key in params:
            fields[name] = params[key]
    return HiresFix(**fields)


def txt2img_values_from_infotext(text: str | Mapping[str, str]) -> dict[str, Any]:
    """The txt2img control values an infotext (text, or its parsed fields) describes, by A1111 payload name."""
    request = request_from_infotext(text) if isinstance(text, str) else request_from_params(text)
    return {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt,
        "sampler_name": request.sampler_name, "scheduler": request.scheduler,
        "steps": request.num_inference_steps, "width": request.width, "height": request.height,
        "cfg_scale": request.guidance_scale, "seed": request.seed, "subseed": request.subseed,
        # An infotext without it (SD images) puts the slider back to its default, as CFG scale's does.
        "distilled_cfg_scale": (DEFAULT_DISTILLED_CFG_SCALE if request.distilled_cfg_scale is None
                                else request.distilled_cfg_scale),
        "subseed_strength": request.subseed_strength, "seed_resize_from_w": request.seed_resize_from_w,
        "seed_resize_from_h": request.seed_resize_from_h, "batch_size": 1, "n_iter": 1, "styles": [],
        **_hires_values(request.hires),
    }


def _hires_values(hires: HiresFix | None) -> dict[str, Any]:
    """The Hires. fix controls' values, by A1111 payload name (off, with defaults, when None)."""
    enabled = hires is not None
    hires = hires or HiresFix()
    return {"enable_hr": enabled, "hr_upscaler": hires.upscaler, "hr_scale": hires.scale,
            "hr_resize_x": hires.resize_x,
            "hr_resize_y": hires.resize_y, "hr_second_pass_steps": hires.steps,
            "denoising_strength": hires.denoising_strength,
            "hr_sampler_name": hires.sampler_name or "Use same sampler",
            "hr_scheduler": hires.scheduler or "Use same scheduler",
            "hr_prompt": hires.prompt, "hr_negative_prompt": hires.negative_prompt,
            # The UI's "use same" is 0 on these sliders (see ``intake.api_fields``).
            "hr_cfg": hires.guidance_scale or 0.0, "hr_distilled_cfg": hires.distilled_cfg_scale or 0.0}


# Payload fields A1111's API ``infotext`` field can fill, and the infotext key each comes from.
_INFOTEXT_FIELDS = {
    "prompt": "Prompt", "negative_prompt": "Negative prompt", "steps": "Steps", "sampler_name": "Sampler",
    "scheduler": "Schedule type", "cfg_scale": "CFG scale", "distilled_cfg_scale": "Distilled CFG Scale",
    "seed": "Seed", "width": "Size-1", "height": "Size-2",
    "subseed": "Variation seed", "subseed_strength": "Variation seed strength",
    "seed_resize_from_w": "Seed resize from-1", "seed_resize_from_h": "Seed resize from-2",
}
#: Infotext keys that record a setting, and the A1111 option each one overrides for a job
#: (A1111's ``infotext_to_setting_name_mapping``; "Model hash" names the checkpoint). Pasting an
#: infotext (UI and API) puts these under ``override_settings``.
INFOTEXT_SETTING_KEYS: Mapping[str, str] = MappingProxyType({
    "Clip skip": "CLIP_stop_at_last_layers", "Model hash": "sd_model_checkpoint", "VAE": "sd_vae",
    "ENSD": "eta_noise_seed_delta", "RNG": "randn_source", "Emphasis": "emphasis", "Eta": "eta_ddim",
})
#: Forge's infotext key of the N-th part file (``module_parameters``); pasted into the
#: ``forge_additional_modules`` setting.
MODULE_KEY = "Module {}"
# The request field holding each setting the request parser reads (typed and checked there).
_INFOTEXT_SETTINGS = {field: (INFOTEXT_SETTING_KEYS[key], key) for field, key in
                      (("clip_skip", "Clip skip"), ("eta_noise_seed_delta", "ENSD"), ("randn_source", "RNG"),
                       ("emphasis", "Emphasis"))}


def module_parameters(part_files: Sequence[str]) -> dict[str, str]:
    """Forge's infotext keys for the part files a checkpoint was loaded with (FLUX.1's VAE and
    text encoders): ``{"Module 1": "ae", "Module 2": "clip_l", ...}``, file names without folder
    and suffix; empty for checkpoints that carry their own parts."""
    return {MODULE_KEY.format(number): PurePath(name).stem for number, name in enumerate(part_files, 1)}


def modules_from_params(params: Mapping[str, str]) -> tuple[str, ...]:
    """The part files an infotext's "Module 1", "Module 2" ... keys name, in order (empty: none)."""
    modules: list[str] = []
    while params.get(MODULE_KEY.format(len(modules) + 1)):
        modules.append(params[MODULE_KEY.format(len(modules) + 1)])
    return tuple(modules)


def apply_payload_infotext(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An A1111 payload with its ``infotext`` field (A1111 1.8+) read into the fields it records.

    Only keys the infotext has are filled; fields the payload gives itself win, and so do its
    own ``override_settings``. Without an infotext the payload is returned as it is (less the key).

    Raises:
        RequestValidationError: ``infotext`` is not text, or records a malformed value.
    """
    result = dict(payload)
    text = result.pop("infotext", None)
    if text is None or text == "":
        return result
    if not isinstance(text, str):
        raise RequestValidationError("infotext", f"must be a string, got {type(text).__name__}")
    params = parse_infotext(text)
    request = request_from_params(params)
    values = txt2img_values_from_infotext(params)
    found = {field: values[field] for field, key in _INFOTEXT_FIELDS.items() if params.get(key)}
    settings = {setting: getattr(request, field) for field, (setting, key) in _INFOTEXT_SETTINGS.items()
                if key in params}
    if request.modules:
        settings["forge_additional_modules"] = list(request.modules)
    overrides = result.get("override_settings")
    if settings and (overrides is None or isinstance(overrides, Mapping)):
        result["override_settings"] = {**settings, **(overrides or {})}
    return {**found, **{key: value for key, value in result.items() if value is not None}}
