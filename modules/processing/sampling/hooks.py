"""Per-step hooks: typed parameters and one dispatcher that isolates failing hooks.

A hook never patches the model or the loop. It receives a frozen ``StepParams`` and returns
a replacement (``dataclasses.replace(step, latents=...)``) or None for "no change". Hooks run
in registration order; a hook that raises is logged with its name, disabled for the rest of
the job, and reported in the job's result. The job goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from PIL import Image

from modules.models.patches import ModelCall, ModelPatches
from modules.processing.prompts.conditioning import Conditioning

__all__ = ["HookDispatcher", "StepHook", "StepParams", "UNetCall", "UNetResiduals"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepParams:
    """One UNet evaluation of the denoising loop, as hooks see it.

    Attributes:
        job_id: the job this step belongs to.
        step: 0-based sampling step (A1111's ``sampling_step``).
        total_steps: number of sampling steps of this pass.
        call_index: 0, or 1 for the second UNet call of a second-order sampler (Heun, DPM2,
            DPM++ SDE) or PLMS's warm-up; both calls share ``step``.
        timestep: scheduler timestep (0-d tensor).
        sigma: the k-diffusion noise level of this call, for every sampler and family
            (``denoiser_view.noise_level``: ``sqrt((1 - a) / a)`` of the timestep's alpha-bar,
            or the flow time of a flow model).
        latents: (B, C, H/8, W/8) the sampler's current sample, before ``scale_model_input``
            (C = 4 for SD; the family's latent channels). Its convention is the scheduler's;
            ``x`` is the same latents in k-diffusion's.
        sample_scale: ``x = sample_scale * latents`` (``denoiser_view.sample_scale``).
        cond: positive conditioning; uncond: negative, or None when CFG is off.
        guidance_scale: CFG scale for this step.
        seeds: the seed of each image of the batch.
    """

    job_id: str
    step: int
    total_steps: int
    call_index: int
    timestep: torch.Tensor
    sigma: float
    latents: torch.Tensor
    cond: Conditioning
    uncond: Conditioning | None
    guidance_scale: float
    seeds: tuple[int, ...] = ()
    sample_scale: float = 1.0

    @property
    def x(self) -> torch.Tensor:
        """(B, C, h, w) the latents in k-diffusion's convention: ``x0 + sigma * eps`` for diffusion
        models, ``(1 - sigma) * x0 + sigma * eps`` for flow models; ``(x - denoised) / sigma`` is
        the sampler's direction in both."""
        return self.latents if self.sample_scale == 1.0 else self.latents * self.sample_scale


#: The batched model input of one call, as ``unet_residuals`` hooks and model-call wrappers see it
#: (one record for both: ``modules.models.patches.ModelCall``, whose ``extra`` is empty here).
UNetCall = ModelCall


@dataclass(frozen=True)
class UNetResiduals:
    """Additions to the UNet's skip connections (what ControlNet computes, Zhang et al. 2023,
    "Adding Conditional Control to Text-to-Image Diffusion Models", Sec. 3.2): one tensor per
    down-block output, (N, C_i, h_i, w_i), and one for the middle block."""

    down: tuple[torch.Tensor, ...]
    mid: torch.Tensor

    def __add__(self, other: UNetResiduals) -> UNetResiduals:
        """Several control units add up, as diffusers' MultiControlNet does."""
        return UNetResiduals(tuple(a + b for a, b in zip(self.down, other.down, strict=True)), self.mid + other.mid)


class StepHook:
    """Base class of per-step hooks; every method is a documented no-op by default."""

    name: str = "hook"
    #: Keys this hook adds to every image's infotext (A1111 ``extra_generation_params``).
    infotext: Mapping[str, Any] = MappingProxyType({})

    def patch_model(self, patches: ModelPatches) -> None:
        """Once before the job: add this hook's per-job model patches (``modules.models.patches``)."""
        return None

    def before_step(self, step: StepParams) -> StepParams | None:
        """Before the UNet call: may return new latents / cond / uncond / guidance_scale."""
        return None

    def unet_residuals(self, step: StepParams, call: UNetCall) -> UNetResiduals | None:
        """Just before the UNet call: residuals to add to its skip connections (ControlNet)."""
        return None

    def after_unet(self, step: StepParams, noise_pred: torch.Tensor) -> torch.Tensor | None:
        """After the model call and CFG: may return a replacement (B, C, H/8, W/8) model output
        (noise, v or flow prediction, as the model makes it; ``after_denoise`` sees x0)."""
        return None

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> torch.Tensor | None:
        """After ``after_unet``: the model's (guided) prediction of the clean latents x0,
        (B, C, H/8, W/8) in latent units, whatever the sampler and family; may return a
        replacement x0, which the loop turns back into the sampler's own model output exactly."""
        return None

    def after_step(self, step: StepParams, latents: torch.Tensor) -> torch.Tensor | None:
        """After the scheduler step: may return replacement latents (B, C, H/8, W/8)."""
        return None

    def uses(self, method: str) -> bool:
        """Whether this hook overrides ``method`` (the loop skips work no hook asks for)."""
        return getattr(type(self), method) is not getattr(StepHook, method)

    def process_batch(self, batch_index: int, seeds: tuple[int, ...]) -> None:
        """Before each batch is denoised (0-based ``batch_index``, the seeds of its images)."""
        return None

    def postprocess_image(self, image: Image.Image, seed: int) -> Image.Image | None:
        """Each finished image, before its infotext is written and it is saved: may replace it."""
        return None

    def postprocess_batch(self, batch_index: int, images: list[Image.Image]) -> None:
        """After every image of a batch is finished (and saved)."""
        return None

    def before_image_saved(self, image: Image.Image, infotext: str) -> tuple[Image.Image, str] | None:
        """Just before an image is saved: may return a replacement (image, infotext) to save."""
        return None

    def image_saved(self, path: Path, image: Image.Image, infotext: str) -> None:
        """After an image of the job was written to ``path``."""
        return None


class HookDispatcher:
    """Runs a job's hooks in order, applying their replacements and isolating their errors."""

    def __init__(self, hooks: Iterable[StepHook] = ()) -> None:
        self._active: list[StepHook] = list(hooks)
        self.errors: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._active)

    def _call(self, hook: StepHook, method: str, *args: Any, expect: type) -> Any:
        try:
            result = getattr(hook, method)(*args)
            if result is not None and not isinstance(result, expect):
                raise TypeError(f"{method}() returned {type(result).__name__}, expected {expect.__name__} or None")
            return result
        except Exception as error:  # a hook must never break the job
            logger.exception("hook %r failed in %s; disabled for the rest of the job", hook.name, method)
            self.errors.append(f"{hook.name}: {method} failed: {error}")
            self._active.remove(hook)
            return None

    def model_patches(self, unet: Any, family: str) -> ModelPatches:
        """The job's model patches: each hook's own, in hook order. A hook whose ``patch_model``
        raises (a patch that does not fit ``unet``, checked as it is added) is disabled like any
        failing hook, and none of its patches are kept."""
        patches = ModelPatches(family)
        for hook in list(self._active):
            own = ModelPatches(family, unet)
            self._call(hook, "patch_model", own, expect=type(None))
            if hook in self._active:
                patches.extend(own)
        return patches

    def before_step(self, step: StepParams) -> StepParams:
        for hook in list(self._active):
            step = self._call(hook, "before_step", step, expect=StepParams) or step
        return step

    def unet_residuals(self, step: StepParams, call: UNetCall) -> UNetResiduals | None:
        """The sum of every hook's residuals for this call, or None when no hook adds any."""
        total = None
        for hook in list(self._active):
            residuals = self._call(hook, "unet_residuals", step, call, expect=UNetResiduals)
            if residuals is not None:
                total = residuals if total is None else total + residuals
        return total

    def after_unet(self, step: StepParams, noise_pred: torch.Tensor) -> torch.Tensor:
        for hook in list(self._active):
            replaced = self._call(hook, "after_unet", step, noise_pred, expect=torch.Tensor)
            noise_pred = noise_pred if replaced is None else replaced
        return noise_pred

    @property
    def wants_denoised(self) -> bool:
        """Whether any active hook overrides ``after_denoise``."""
        return any(hook.uses("after_denoise") for hook in self._active)

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> torch.Tensor:
        for hook in list(self._active):
            replaced = self._call(hook, "after_denoise", step, denoised, expect=torch.Tensor)
            denoised = denoised if replaced is None else replaced
        return denoised

    def after_step(self, step: StepParams, latents: torch.Tensor) -> torch.Tensor:
        for hook in list(self._active):
            replaced = self._call(hook, "after_step", step, latents, expect=torch.Tensor)
            latents = latents if replaced is None else replaced
        return latents

    def process_batch(self, batch_index: int, seeds: tuple[int, ...]) -> None:
        for hook in list(self._active):
            self._call(hook, "process_batch", batch_index, seeds, expect=type(None))

    def postprocess_image(self, image: Image.Image, seed: int) -> Image.Image:
        for hook in list(self._active):
            replaced = self._call(hook, "postprocess_image", image, seed, expect=Image.Image)
            image = image if replaced is None else replaced
        return image

    def postprocess_batch(self, batch_index: int, images: list[Image.Image]) -> None:
        for hook in list(self._active):
            self._call(hook, "postprocess_batch", batch_index, images, expect=type(None))

    def before_image_saved(self, image: Image.Image, infotext: str) -> tuple[Image.Image, str]:
        for hook in list(self._active):
            replaced = self._call(hook, "before_image_saved", image, infotext, expect=tuple)
            if replaced is not None:
                image, infotext = replaced
        return image, infotext

    def image_saved(self, path: Path, image: Image.Image, infotext: str) -> None:
        for hook in list(self._active):
            self._call(hook, "image_saved", path, image, infotext, expect=type(None))
