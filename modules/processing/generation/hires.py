"""Hires. fix: a second, img2img-style pass over txt2img's result at a larger size.

A1111's two-pass txt2img: the first pass runs at the requested size (where the model composes
well), its result is upscaled — in latent space ("Latent …" modes) or as pixels through an
image upscaler — and then noised to ``denoising_strength`` and denoised again at the new size,
which adds the detail a plain resize cannot. As in img2img, ``int(steps · strength)`` of a
``steps``-step schedule run (``steps`` = Hires steps, or the first pass's when 0).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.guidance import CFG_SCALE_RANGE, DISTILLED_CFG_SCALE_RANGE

__all__ = ["LATENT_UPSCALE_MODES", "HiresFix", "ImageUpscale", "hires_parameters", "resize_pixels", "upscale_latents"]

# A1111's latent upscale modes: name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}

# ``(image, upscaler name, width, height) -> image`` of exactly that size: the image upscalers
# (Lanczos, ESRGAN…) that the caller provides; the engine only knows the latent modes.
ImageUpscale = Callable[[Image.Image, str, int, int], Image.Image]


@dataclass(frozen=True)
class HiresFix:
    """The second pass's settings (A1111 ``hr_*`` fields).

    ``resize_x``/``resize_y`` (0 = unset) take precedence over ``scale``: one of them keeps the
    first pass's aspect ratio, both crop to fit. ``steps`` 0 means the first pass's steps;
    empty ``sampler_name``/``scheduler``/``prompt``/``negative_prompt`` mean "use the same", as
    None ``guidance_scale`` (Forge's ``hr_cfg``) and ``distilled_cfg_scale`` (``hr_distilled_cfg``) do.
    """

    upscaler: str = "Latent"
    scale: float = 2.0
    resize_x: int = 0
    resize_y: int = 0
    steps: int = 0
    denoising_strength: float = 0.7
    sampler_name: str = ""
    scheduler: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    guidance_scale: float | None = None
    distilled_cfg_scale: float | None = None

    def __post_init__(self) -> None:
        checks = [
            ("hr_upscaler", isinstance(self.upscaler, str) and bool(self.upscaler), "must name an upscaler"),
            ("hr_scale", _number(self.scale) and 1.0 <= self.scale <= 8.0, "must be a number from 1 to 8"),
            ("hr_resize_x", _count(self.resize_x) and self.resize_x <= 8192, "must be a whole number from 0 to 8192"),
            ("hr_resize_y", _count(self.resize_y) and self.resize_y <= 8192, "must be a whole number from 0 to 8192"),
            ("hr_second_pass_steps", _count(self.steps) and self.steps <= 150, "must be a whole number from 0 to 150"),
            ("denoising_strength", _number(self.denoising_strength) and 0.0 <= self.denoising_strength <= 1.0,
             "must be a number from 0 to 1"),
            ("hr_cfg", self.guidance_scale is None or _within(self.guidance_scale, CFG_SCALE_RANGE),
             _range_message(CFG_SCALE_RANGE)),
            ("hr_distilled_cfg", self.distilled_cfg_scale is None or _within(self.distilled_cfg_scale,
                                                                             DISTILLED_CFG_SCALE_RANGE),
             _range_message(DISTILLED_CFG_SCALE_RANGE)),
        ]
        for name, ok, message in checks:
            if not ok:
                value = getattr(self, _FIELD_OF[name])
                raise RequestValidationError(name, f"{message}, got {value!r}")
        for name in ("sampler_name", "scheduler", "prompt", "negative_prompt"):
            if not isinstance(getattr(self, name), str):
                raise RequestValidationError(f"hr_{name}", "must be a string")

    @property
    def is_latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALE_MODES

    def target_size(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(upscaled width, height, final width, height) for a ``width``×``height`` first pass.

        The upscaled size covers the final one; the surplus is cropped evenly from both sides
        (only when both resize sides are given with another aspect ratio). Sizes are rounded
        down to multiples of 8, the VAE's scale.
        """
        if self.resize_x == 0 and self.resize_y == 0:
            cover_w, cover_h = int(width * self.scale), int(height * self.scale)
            final_w, final_h = cover_w, cover_h
        elif self.resize_y == 0 or self.resize_x == 0:
            cover_w = self.resize_x or self.resize_y * width // height
            cover_h = self.resize_y or self.resize_x * height // width
            final_w, final_h = cover_w, cover_h
        else:
            final_w, final_h = self.resize_x, self.resize_y
            if width / height < final_w / final_h:
                cover_w, cover_h = final_w, math.ceil(final_w * height / width)
            else:
                cover_w, cover_h = math.ceil(final_h * width / height), final_h
        sizes = [max(64, value // 8 * 8) for value in (cover_w, cover_h, final_w, final_h)]
        return sizes[0], sizes[1], min(sizes[2], sizes[0]), min(sizes[3], sizes[1])

    def steps_to_run(self, first_pass_steps: int) -> tuple[int, int]:
        """(schedule length, steps that run) of the second pass."""
        total = self.steps or first_pass_steps
        if self.denoising_strength <= 0:
            return total, 0
        return total, max(1, min(int(total * self.denoising_strength), total))

    def for_second_pass(self, request: object) -> object:
        """``request`` with the second pass's prompts, sampler, schedule type and guidance."""
        changes: dict[str, object] = {name: getattr(self, name) for name in _SAME_WHEN_EMPTY if getattr(self, name)}
        changes.update({name: getattr(self, name) for name in _SAME_WHEN_NONE if getattr(self, name) is not None})
        return dataclasses.replace(request, **changes)  # type: ignore[type-var]


# The request fields a second pass may set, by how "use the first pass's" is written.
_SAME_WHEN_EMPTY = ("prompt", "negative_prompt", "sampler_name", "scheduler")
_SAME_WHEN_NONE = ("guidance_scale", "distilled_cfg_scale")
_FIELD_OF = {"hr_upscaler": "upscaler", "hr_scale": "scale", "hr_resize_x": "resize_x", "hr_resize_y": "resize_y",
             "hr_second_pass_steps": "steps", "denoising_strength": "denoising_strength",
             "hr_cfg": "guidance_scale", "hr_distilled_cfg": "distilled_cfg_scale"}


def _within(value: object, bounds: tuple[float, float]) -> bool:
    return _number(value) and bounds[0] <= value <= bounds[1]  # type: ignore[operator]


def _range_message(bounds: tuple[float, float]) -> str:
    return f"must be a number from {bounds[0]:g} to {bounds[1]:g}"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def upscale_latents(latents: torch.Tensor, mode: str, width: int, height: int, final_width: int,
                    final_height: int, scale_factor: int = 8) -> torch.Tensor:
    """Resize latents (B, C, h, w) to the cover size, then centre-crop to the final size.

    ``mode`` is one of ``LATENT_UPSCALE_MODES``; sizes are in pixels (divided by ``scale_factor``).
    """
    interpolation, antialias = LATENT_UPSCALE_MODES[mode]
    size = (height // scale_factor, width // scale_factor)
    resized = torch.nn.functional.interpolate(latents.float(), size=size, mode=interpolation,
                                              antialias=antialias).to(latents.dtype)
    return _centre_crop(resized, final_width // scale_factor, final_height // scale_factor)


def resize_pixels(images: list[Image.Image], upscaler: str, width: int, height: int, final_width: int,
                  final_height: int, upscale: ImageUpscale | None) -> list[Image.Image]:
    """Upscale decoded first-pass images to the cover size and centre-crop them to the final size.

    Without ``upscale`` only "None"/"Lanczos"/"Nearest" work (plain PIL resizes).
    """
    resized = []
    for image in images:
        if upscale is not None:
            image = upscale(image, upscaler, width, height)
        elif upscaler in ("None", "Lanczos", "Nearest"):
            method = Image.Resampling.NEAREST if upscaler == "Nearest" else Image.Resampling.LANCZOS
            image = image.resize((width, height), method)
        else:
            raise RequestValidationError("hr_upscaler", f"upscaler {upscaler!r} is not available here")
        left, top = (width - final_width) // 2, (height - final_height) // 2
        resized.append(image.crop((left, top, left + final_width, top + final_height)))
    return resized


def _centre_crop(latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    top, left = (latents.shape[-2] - height) // 2, (latents.shape[-1] - width) // 2
    return latents[..., top:top + height, left:left + width]


def hires_parameters(hires: HiresFix, width: int, height: int) -> dict[str, object]:
    """The infotext keys A1111 writes for a hires pass (after "Denoising strength")."""
    params: dict[str, object] = {"Denoising strength": hires.denoising_strength}
    if hires.prompt:
        params["Hires prompt"] = hires.prompt
    if hires.negative_prompt:
        params["Hires negative prompt"] = hires.negative_prompt
    if hires.resize_x or hires.resize_y:
        _, _, final_w, final_h = hires.target_size(width, height)
        params["Hires resize"] = f"{final_w}x{final_h}"
    else:
        params["Hires upscale"] = hires.scale
    if hires.steps:
        params["Hires steps"] = hires.steps
    params["Hires upscaler"] = hires.upscaler
    if hires.sampler_name:
        params["Hires sampler"] = hires.sampler_name
    if hires.scheduler:
        params["Hires schedule type"] = hires.scheduler
    if hires.guidance_scale is not None:  # Forge's keys
        params["Hires CFG Scale"] = hires.guidance_scale
    if hires.distilled_cfg_scale is not None:
        params["Hires Distilled CFG Scale"] = hires.distilled_cfg_scale
    return params
