"""The denoising loop. The engine owns it (it never calls ``pipeline.__call__``) so that hooks
run before and after every UNet call and conditioning can change from step to step.

The loop follows diffusers' own unrolled loop (schedulers are separate from models and only
expose ``set_timesteps``/``scale_model_input``/``step``) with classifier-free guidance as in
Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6, in one batched UNet call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from modules.models.patches import ModelCall, run_unet
from modules.processing.errors import DenoiseInterrupted, JobInterrupted
from modules.processing.prompts.conditioning import Conditioning
from modules.processing.sampling.denoiser_view import (
    from_denoised,
    noise_level,
    sample_convention,
    sample_scale,
    to_denoised,
)
from modules.processing.sampling.hooks import HookDispatcher, StepParams

__all__ = ["DenoiseInputs", "denoise", "predict_noise", "step_positions"]


@dataclass(frozen=True)
class DenoiseInputs:
    """Everything one pass of the loop needs besides the hooks.

    Attributes:
        unet: the diffusers UNet2DConditionModel, or the job's ``PatchedUNet`` (per-job patches).
        scheduler: a fresh scheduler with ``set_timesteps`` already called.
        latents: (B, 4, H/8, W/8) starting latents, already scaled by ``init_noise_sigma``,
            on the UNet's device and dtype.
        cond / uncond: text conditioning; ``uncond`` None disables CFG.
        guidance_scale: CFG scale; 1 also disables the unconditional half.
        num_steps: sampling steps of this pass (the scheduler may call the UNet more often).
        time_ids: SDXL micro-conditioning (B, 6), or None.
        distilled_guidance: the guidance strength of a guidance-distilled model (FLUX.1-dev) for
            this pass, when it differs from the one the denoiser was built with (Hires. fix's own);
            None keeps the denoiser's.
        extra_channels: (B, 5, H/8, W/8) mask + masked-image latents for 9-channel
            inpainting UNets, or None.
        step_kwargs: extra keyword arguments of ``scheduler.step`` (eta, generator).
        seeds: per-image seeds, passed on to hooks.
        job_id: passed on to hooks.
        start_index: first scheduler call to run; img2img skips the noisiest ones (the
            scheduler's ``set_begin_index`` must already say so).
        conds_at: ``conds_at(step)`` gives (cond, uncond) of a 0-based sampling step, for
            prompts whose conditioning changes during sampling; None keeps ``cond``/``uncond``.
        blend: after each completed step, ``blend(latents, next_timestep)`` returns the
            latents to continue from (inpainting puts the kept area back at the next step's
            noise level; ``next_timestep`` is None after the last step).
    """

    unet: Any
    scheduler: Any
    latents: torch.Tensor
    cond: Conditioning
    uncond: Conditioning | None
    guidance_scale: float
    num_steps: int
    time_ids: torch.Tensor | None = None
    distilled_guidance: float | None = None
    extra_channels: torch.Tensor | None = None
    step_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    job_id: str = ""
    start_index: int = 0
    conds_at: Callable[[int], tuple[Conditioning, Conditioning | None]] | None = None
    blend: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None


def step_positions(num_calls: int, num_steps: int, second_order: bool) -> list[tuple[int, int]]:
    """Map each scheduler call to (sampling step, call index).

    Second-order diffusers schedulers (Heun, DPM2, DPM++ SDE) interleave their timesteps:
    calls 2k and 2k+1 make step k, and the last step is a single first-order call. PLMS
    evaluates the first step twice (one extra call). Everything else is one call per step.
    """
    if second_order:
        return [(j // 2, j % 2) for j in range(num_calls)]
    extra = num_calls - num_steps
    return [(0, j) if j <= extra else (j - extra, 0) for j in range(num_calls)]


def predict_noise(inputs: DenoiseInputs, step: StepParams, model_input: torch.Tensor,
                  hooks: HookDispatcher | None = None) -> torch.Tensor:
    """One batched UNet call for the unconditional half and every positive sub-prompt, combined.

    CFG (Ho & Salimans 2022, Eq. 6) generalised to AND prompts as in Composable Diffusion
    (Liu et al. 2022, Eq. 11): ``uncond + scale * sum_i w_i * (cond_i - uncond)``. Without
    CFG, the sub-prompts' predictions are averaged with their weights.

    Args:
        inputs: the pass (UNet, SDXL time ids, inpainting channels).
        step: the hooks' view of this call (latents, cond, uncond, guidance_scale).
        model_input: (B, C, h, w) latents after ``scale_model_input`` (C = 4, or 9 with
            inpainting channels appended).
        hooks: asked for residuals to add to the UNet's skip connections (ControlNet units).

    Returns:
        (B, 4, h, w) guided noise (or v / x0) prediction, in the UNet's dtype.
    """
    use_cfg = step.uncond is not None and step.guidance_scale != 1.0
    weights = step.cond.weights
    conds = [step.uncond, step.cond] if use_cfg else [step.cond]
    copies = len(weights) + (1 if use_cfg else 0)
    batch = torch.cat([model_input] * copies)
    embeds = torch.cat([c.embeds for c in conds])
    added = None
    if step.cond.pooled is not None:  # SDXL's (and FLUX's) pooled text embedding; SDXL's size conditioning
        added = {"text_embeds": torch.cat([c.pooled for c in conds])}
        if inputs.time_ids is not None:
            added["time_ids"] = torch.cat([inputs.time_ids] * copies)
        if inputs.distilled_guidance is not None:
            added["guidance"] = torch.full((batch.shape[0],), float(inputs.distilled_guidance), dtype=torch.float32,
                                           device=batch.device)
    call = ModelCall(batch, step.timestep, embeds, added, copies, use_cfg, step.guidance_scale)
    residuals = hooks.unet_residuals(step, call) if hooks else None
    if residuals is not None:
        call = replace(call, extra={"down_block_additional_residuals": list(residuals.down),
                                                "mid_block_additional_residual": residuals.mid})
    out = run_unet(inputs.unet, call)
    parts = out.chunk(copies)
    if not use_cfg:
        if len(weights) == 1:
            return out
        total = sum(weights) or 1.0  # all-zero weights: no division by zero, the sum itself (zeros)
        return sum(w * part for w, part in zip(weights, parts, strict=True)) / total
    uncond_pred = parts[0]
    guided = sum(w * (part - uncond_pred) for w, part in zip(weights, parts[1:], strict=True))
    return uncond_pred + step.guidance_scale * guided


def _model_input(scheduler: Any, latents: torch.Tensor, timestep: Any) -> torch.Tensor:
    """The latents as the model takes them: k-diffusion-style schedulers divide by sqrt(1 + sigma^2);
    flow-matching schedulers have no such step (the model takes the flow sample itself)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return latents if scale is None else scale(latents, timestep)


def denoise(
    inputs: DenoiseInputs,
    hooks: HookDispatcher,
    check_cancel: Callable[[], None],
    on_step: Callable[[int, torch.Tensor], None],
) -> torch.Tensor:
    """Run the sampler from ``inputs.latents`` to clean latents.

    Args:
        inputs: the pass.
        hooks: the job's hook dispatcher.
        check_cancel: raises to stop (interrupt/skip); called after every UNet call.
        on_step: called with (steps done, latents) after each completed sampling step.

    Returns:
        (B, 4, H/8, W/8) denoised latents.

    Raises:
        DenoiseInterrupted: ``check_cancel`` raised an interrupt; it carries the last step's
            clean-latents estimate. A skip (``BatchSkipped``) passes through as it is.
    """
    scheduler = inputs.scheduler
    timesteps = scheduler.timesteps[inputs.start_index:]
    second_order = hasattr(scheduler, "state_in_first_order")
    positions = step_positions(len(timesteps), inputs.num_steps, second_order)
    convention, prediction = sample_convention(scheduler), scheduler.config.get("prediction_type", "epsilon")
    latents = inputs.latents
    for call, t in enumerate(timesteps):
        step_index, call_index = positions[call]
        model_latents = _model_input(scheduler, latents, t)
        cond, uncond = inputs.conds_at(step_index) if inputs.conds_at else (inputs.cond, inputs.uncond)
        sigma = noise_level(scheduler, t)
        step = StepParams(
            inputs.job_id, step_index, inputs.num_steps, call_index, t, sigma,
            latents, cond, uncond, inputs.guidance_scale, inputs.seeds, sample_scale(convention, sigma),
        )
        if hooks:
            step = hooks.before_step(step)
            if step.latents is not latents:
                model_latents = _model_input(scheduler, step.latents, t)
        if inputs.extra_channels is not None:
            model_latents = torch.cat([model_latents, inputs.extra_channels], dim=1)
        output = predict_noise(inputs, step, model_latents, hooks)
        if hooks:
            output = hooks.after_unet(step, output)
            if hooks.wants_denoised and sigma > 0:  # sigma 0 (a last LCM/DDIM call): x is x0 already
                denoised = to_denoised(convention, prediction, step.latents, output, sigma)
                replaced = hooks.after_denoise(step, denoised)
                if replaced is not denoised:
                    output = from_denoised(convention, prediction, step.latents, replaced.to(output.dtype), sigma)
        latents = scheduler.step(output, t, step.latents, **inputs.step_kwargs, return_dict=False)[0]
        if hooks:
            latents = hooks.after_step(step, latents)
        try:
            check_cancel()
        except JobInterrupted:
            raise DenoiseInterrupted(to_denoised(convention, prediction, step.latents, output, sigma)) from None
        if call + 1 == len(timesteps) or positions[call + 1][0] != step_index:
            if inputs.blend is not None:
                latents = inputs.blend(latents, timesteps[call + 1] if call + 1 < len(timesteps) else None)
            on_step(step_index + 1, latents)
    return latents
