"""Generation requests: frozen, validated dataclasses in diffusers vocabulary.

A1111 names (``steps``, ``cfg_scale``, ``n_iter``) appear only at the edges (REST schema, CLI
flags, infotext); ``API_FIELD_NAMES`` maps ours to theirs so that a validation error names the
field the user actually typed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from modules.processing.errors import RequestValidationError
from modules.processing.generation.hires import HiresFix
from modules.processing.guidance import CFG_SCALE_RANGE, DEFAULT_DISTILLED_CFG_SCALE, DISTILLED_CFG_SCALE_RANGE
from modules.processing.prompts.prompt_encoding import EMPHASIS_MODES
from modules.processing.sampling.job_schedulers import request_sampler
from modules.processing.sampling.seeds import RANDN_SOURCES

__all__ = ["API_FIELD_NAMES", "DEFAULT_DISTILLED_CFG_SCALE", "DISTILLED_CFG_SCALE_RANGE", "Limits", "MAX_SEED",
           "Txt2ImgRequest", "check_float", "check_int"]

#: Largest accepted seed: seed + image index must still fit torch's 64-bit generator seed.
MAX_SEED = 2**63 - 1 - 100_000

API_FIELD_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "num_inference_steps": "steps",
        "guidance_scale": "cfg_scale",
        "batch_count": "n_iter",
        "checkpoint": "sd_model_checkpoint",
        "vae": "sd_vae",
        "modules": "forge_additional_modules",
    }
)


@dataclass(frozen=True)
class Limits:
    """Bounds a request is checked against; settings may widen them (A1111 UI defaults)."""

    min_size: int = 64
    max_size: int = 2048
    max_steps: int = 150
    max_batch_size: int = 8
    max_batch_count: int = 100
    max_prompt_chars: int = 100_000


def _api_name(name: str) -> str:
    return API_FIELD_NAMES.get(name, name)


def check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestValidationError(_api_name(name), f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise RequestValidationError(_api_name(name), f"must be between {low} and {high}, got {value}")


def check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestValidationError(_api_name(name), f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RequestValidationError(_api_name(name), f"must be a finite number, got {value}")
    if not low <= value <= high:
        raise RequestValidationError(_api_name(name), f"must be between {low} and {high}, got {value}")


def _check_text(name: str, value: Any, max_chars: int) -> None:
    if not isinstance(value, str):
        raise RequestValidationError(_api_name(name), f"must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise RequestValidationError(_api_name(name), f"is longer than {max_chars} characters")
    if "\x00" in value:
        raise RequestValidationError(_api_name(name), "must not contain NUL characters")


@dataclass(frozen=True)
class Txt2ImgRequest:
    """Everything that decides a txt2img job's pixels (and nothing about how it is shown).

    ``seed == -1`` asks for a random seed; the runner resolves it before generating so the
    infotext records the real one. Image ``k`` of the job (across batches) uses ``seed + k``.
    """

    prompt: str = ""
    negative_prompt: str = ""
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    num_inference_steps: int = 20
    guidance_scale: float = 7.0
    #: Forge's "Distilled CFG Scale": the guidance strength fed to a guidance-distilled model
    #: (FLUX.1-dev) as an input, not real CFG. None = not given: the engine uses
    #: ``DEFAULT_DISTILLED_CFG_SCALE`` on such models; other models ignore it.
    distilled_cfg_scale: float | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    width: int = 512
    height: int = 512
    batch_size: int = 1
    batch_count: int = 1
    clip_skip: int = 1
    emphasis: str = "Original"
    eta: float | None = None
    #: A1111's "Eta noise seed delta" (ENSD): ancestral samplers draw their per-step noise from
    #: ``seed + delta`` (NovelAI's images use 31337).
    eta_noise_seed_delta: int = 0
    #: A1111's "Random number generator source": "CPU" (the same image on every device) or "GPU".
    randn_source: str = "CPU"
    tiling: bool = False
    checkpoint: str | None = None
    vae: str | None = None
    #: Forge's "VAE / Text Encoder" choice (``forge_additional_modules``): part files by name for
    #: models that take them from their folders (FLUX.1); None = the server's setting.
    modules: tuple[str, ...] | None = None
    hires: HiresFix | None = None  # Hires. fix (A1111 ``enable_hr``): a second pass at a larger size
    script_args: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    # The prompts as written, when wildcards/variants made ``prompt``/``negative_prompt`` from them.
    template: str = ""
    negative_template: str = ""
    limits: Limits = field(default=Limits(), compare=False, repr=False)

    def __post_init__(self) -> None:
        self._validate_text()
        self._validate_numbers()
        self._normalise_sampler()
        if self.emphasis not in EMPHASIS_MODES:
            raise RequestValidationError("emphasis",
                                         f"must be one of {', '.join(EMPHASIS_MODES)}; got {self.emphasis!r}")
        if self.randn_source not in RANDN_SOURCES:
            raise RequestValidationError("randn_source", f"must be one of {', '.join(RANDN_SOURCES)}; "
                                                         f"got {self.randn_source!r}")
        if not isinstance(self.tiling, bool):
            raise RequestValidationError("tiling", f"must be true or false, got {self.tiling!r}")
        for name in ("checkpoint", "vae"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise RequestValidationError(_api_name(name), f"must be a string, got {value!r}")
        self._validate_modules()
        if not isinstance(self.script_args, Mapping):
            raise RequestValidationError("script_args", "must be an object keyed by script title")
        if self.hires is not None:
            self._validate_hires(self.hires)
        object.__setattr__(self, "script_args", MappingProxyType(dict(self.script_args)))

    def _validate_modules(self) -> None:
        if self.modules is None:
            return
        if isinstance(self.modules, str) or not isinstance(self.modules, Sequence) or not all(
                isinstance(name, str) for name in self.modules):
            raise RequestValidationError(_api_name("modules"), f"must be a list of file names, got {self.modules!r}")
        object.__setattr__(self, "modules", tuple(self.modules))

    def _validate_text(self) -> None:
        for name in ("prompt", "negative_prompt", "template", "negative_template"):
            _check_text(name, getattr(self, name), self.limits.max_prompt_chars)

    def _validate_numbers(self) -> None:
        lim = self.limits
        for name in ("width", "height"):
            value = getattr(self, name)
            check_int(name, value, lim.min_size, lim.max_size)
            if value % 8:
                raise RequestValidationError(name, f"must be a multiple of 8, got {value}")
        check_int("num_inference_steps", self.num_inference_steps, 1, lim.max_steps)
        check_float("guidance_scale", self.guidance_scale, *CFG_SCALE_RANGE)
        if self.distilled_cfg_scale is not None:
            check_float("distilled_cfg_scale", self.distilled_cfg_scale, *DISTILLED_CFG_SCALE_RANGE)
        check_int("seed", self.seed, -1, MAX_SEED)
        check_int("subseed", self.subseed, -1, MAX_SEED)
        check_float("subseed_strength", self.subseed_strength, 0.0, 1.0)
        check_int("seed_resize_from_w", self.seed_resize_from_w, -1, lim.max_size)
        check_int("seed_resize_from_h", self.seed_resize_from_h, -1, lim.max_size)
        check_int("batch_size", self.batch_size, 1, lim.max_batch_size)
        check_int("batch_count", self.batch_count, 1, lim.max_batch_count)
        check_int("clip_skip", self.clip_skip, 1, 12)
        check_int("eta_noise_seed_delta", self.eta_noise_seed_delta, 0, MAX_SEED)
        if self.eta is not None:
            check_float("eta", self.eta, 0.0, 1.0)

    def _normalise_sampler(self) -> None:
        if not isinstance(self.sampler_name, str):
            raise RequestValidationError("sampler_name", f"must be a string, got {self.sampler_name!r}")
        if not isinstance(self.scheduler, str):
            raise RequestValidationError("scheduler", f"must be a string, got {self.scheduler!r}")
        sampler_name, schedule = request_sampler(self.sampler_name, self.scheduler)
        object.__setattr__(self, "sampler_name", sampler_name)
        object.__setattr__(self, "scheduler", schedule)

    def _validate_hires(self, hires: HiresFix) -> None:
        if not isinstance(hires, HiresFix):
            raise RequestValidationError("enable_hr", f"hires settings expected, got {type(hires).__name__}")
        for name in ("prompt", "negative_prompt"):
            _check_text(f"hr_{name}", getattr(hires, name), self.limits.max_prompt_chars)
        request_sampler(hires.sampler_name or self.sampler_name, hires.scheduler or self.scheduler,
                        ("hr_sampler_name", "hr_scheduler"))
        _, _, width, height = hires.target_size(self.width, self.height)
        if width * height > self.limits.max_size ** 2 * 4:
            raise RequestValidationError("hr_scale", f"the second pass would be {width}x{height}; the limit is "
                                                     f"{self.limits.max_size * 2}x{self.limits.max_size * 2} pixels")

    @property
    def images_per_job(self) -> int:
        return self.batch_size * self.batch_count

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "limits")
