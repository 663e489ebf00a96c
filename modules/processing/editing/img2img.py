"""img2img and inpainting: run an ``Img2ImgRequest`` as a job on a loaded model.

The same loop as txt2img, started part-way: the input is encoded by the VAE, noised to the
level of the first step that runs (``int(steps * strength)`` of a ``steps``-step schedule
remain, as in A1111 and diffusers' img2img), and denoised from there. Inpainting with a
4-channel model puts the kept area back after every step, noised to the next step's level
(as diffusers' inpainting pipeline does), so only the masked area changes; a 9-channel
inpainting model gets the mask and the masked image as extra UNet input instead. Finally the
input's own pixels are laid back over the kept area.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.editing.image_ops import flatten
from modules.processing.editing.img2img_inputs import (
    PreparedInput,
    finish_output,
    latent_mask,
    pixels_to_tensor,
    prepare_input,
)
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.errors import JobInterrupted
from modules.processing.generation.txt2img import (
    GenerationResult,
    OutputOptions,
    batch_conditioning,
    batch_noise,
    job_networks,
    job_unet,
    record_image,
    resolved_request,
    run_batches,
    run_until_interrupted,
    sampler_step_kwargs,
    sdxl_time_ids,
)
from modules.processing.generation.vae import decode_latents, encode_pixels, to_pil_images
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.output.request_infotext import img2img_parameters, module_parameters
from modules.processing.prompts.prompt_conditioning import ScheduledConditioning
from modules.processing.sampling.denoise import DenoiseInputs, denoise
from modules.processing.sampling.hooks import HookDispatcher
from modules.processing.sampling.job_schedulers import noised_to, pass_scheduler, starting_noise
from modules.processing.sampling.seeds import ImageSeeds

__all__ = ["EMPTY_MASK_NOTICE", "run_img2img"]

EMPTY_MASK_NOTICE = "The mask is empty: there is nothing to inpaint, so the input is returned unchanged."


@dataclasses.dataclass(frozen=True)
class _BatchInputs:
    """The prepared inputs of one batch and their latents (B, 4, h, w), scaled."""

    prepared: list[PreparedInput]
    latents: torch.Tensor
    repaint: torch.Tensor | None  # (B, 1, h, w), 1 = repaint; None for img2img


def _encode_batch(model: LoadedModel, request: Img2ImgRequest, prepared: list[PreparedInput]) -> _BatchInputs:
    factor = model.vae_scale_factor
    size = (request.height // factor, request.width // factor)
    latents = []
    for item in prepared:
        encoded = encode_pixels(model.pipeline.vae, pixels_to_tensor(item.init))
        if encoded.shape[-2:] != size:  # "Just resize (latent upscale)"
            encoded = torch.nn.functional.interpolate(encoded.float(), size=size, mode="bilinear")
        latents.append(encoded)
    repaint = None
    if prepared[0].mask is not None:
        repaint = torch.cat([latent_mask(item.mask, size) for item in prepared])
    return _BatchInputs(prepared, torch.cat(latents).to(model.device, model.dtype),
                        None if repaint is None else repaint.to(model.device, model.dtype))


def _inpaint_model_channels(model: LoadedModel, batch: _BatchInputs) -> torch.Tensor | None:
    """9-channel UNets: (B, 5, h, w) = repaint mask + latents of the input with the masked
    area blanked to grey (diffusers' ``prepare_mask_latents``); otherwise None."""
    if not model.family.is_inpaint:
        return None
    if batch.repaint is None:  # img2img on an inpainting model: nothing masked, the input's own latents
        return torch.cat([torch.zeros_like(batch.latents[:, :1]), batch.latents], dim=1)
    masked = []
    for item in batch.prepared:
        keep = pixels_to_tensor(item.mask.convert("RGB"))[:, :1] < 0.0  # mask below half-way
        masked.append(encode_pixels(model.pipeline.vae, pixels_to_tensor(item.init) * keep))
    masked_latents = torch.cat(masked).to(model.device, model.dtype)
    masked_latents = torch.nn.functional.interpolate(masked_latents, size=batch.latents.shape[-2:])
    return torch.cat([batch.repaint, masked_latents], dim=1)


def _start_latents(request: Img2ImgRequest, scheduler: object, batch: _BatchInputs, noise: torch.Tensor,
                   start: int) -> torch.Tensor:
    """The loop's first latents: the input noised to the first step's level (pure noise when
    the whole schedule runs: strength 1 ignores the input). "latent noise" / "latent nothing"
    first replace the masked area's latents with the noise itself / zeros (A1111)."""
    init = batch.latents
    if batch.repaint is not None and request.masked_content in ("latent noise", "latent nothing"):
        fill = noise if request.masked_content == "latent noise" else torch.zeros_like(noise)
        init = init * (1 - batch.repaint) + fill * batch.repaint
    if start == 0:
        return starting_noise(scheduler, noise)
    return noised_to(scheduler, init, noise, scheduler.timesteps[start:start + 1])  # type: ignore[attr-defined]


def _kept_area_blend(scheduler: object, batch: _BatchInputs, noise: torch.Tensor):
    """After each step, the kept area is the input noised to the next step's level (the clean
    input after the last step), so the model repaints only the masked area but sees it in context."""
    keep = 1 - batch.repaint

    def blend(latents: torch.Tensor, next_timestep: torch.Tensor | None) -> torch.Tensor:
        if next_timestep is None:
            reference = batch.latents
        else:
            reference = noised_to(scheduler, batch.latents, noise, next_timestep.reshape(1))
        return reference * keep + latents * batch.repaint

    return blend


def _run_batch(model: LoadedModel, job: Job, batch_index: int, seeds: ImageSeeds, batch: _BatchInputs,
               conds: ScheduledConditioning, hooks: HookDispatcher, unet: Any) -> torch.Tensor:
    """Denoise one batch from its inputs with ``unet`` (the job's); returns its latents (B, 4, H/8, W/8)."""
    request: Img2ImgRequest = job.request
    batch_seeds, batch_subseeds = seeds.batch(batch_index, request.batch_size)
    steps_to_run = request.steps_to_run()
    sampler = pass_scheduler(model.family, model.scheduler_config, request.sampler_name, request.scheduler,
                             request.num_inference_steps, tuple(batch.latents.shape[-2:]), model.device, batch_seeds,
                             steps_to_run)
    spec, scheduler, start = sampler.spec, sampler.scheduler, sampler.start
    noise, generators = batch_noise(model, request, spec, tuple(batch.latents.shape[1:]), batch_seeds, batch_subseeds)
    if request.initial_noise_multiplier != 1.0:  # A1111 scales the noise itself, so the kept-area blend sees it too
        noise = noise * request.initial_noise_multiplier
    blend = None
    if batch.repaint is not None and not model.family.is_inpaint:
        blend = _kept_area_blend(scheduler, batch, noise)
    inputs = DenoiseInputs(
        unet=unet, scheduler=scheduler, latents=_start_latents(request, scheduler, batch, noise, start),
        cond=conds.at(0)[0], uncond=conds.at(0)[1], conds_at=conds.at, guidance_scale=request.guidance_scale,
        num_steps=steps_to_run,
        time_ids=sdxl_time_ids(model, request), extra_channels=_inpaint_model_channels(model, batch),
        step_kwargs=sampler_step_kwargs(spec, scheduler, request, generators), seeds=tuple(batch_seeds),
        job_id=job.id, start_index=start, blend=blend,
    )

    def report(step: int, latents: torch.Tensor) -> None:
        if job.on_progress is not None:
            job.on_progress(ProgressUpdate(job.id, batch_index, request.batch_count, step, steps_to_run,
                                           job.elapsed_s(), latents, model.family.id))

    return denoise(inputs, hooks, job.cancel.raise_if_cancelled, report)


def _record(model: LoadedModel, result: GenerationResult, image: Image.Image, seed: int, subseed: int,
            output: OutputOptions | None, hooks: HookDispatcher | None = None) -> None:
    """Add one finished image to the result with its infotext, and save it if asked."""
    request: Img2ImgRequest = result.request  # type: ignore[assignment]
    vae_name = model.vae_file.name if model.vae_file else None
    params = img2img_parameters(request, seed, subseed, model.name, model.short_hash, vae_name, model.vae_hash,
                                result.extra_parameters)
    record_image(result, image, seed, subseed, params, output, hooks)


def _unchanged_inputs(request: Img2ImgRequest, prepared: list[PreparedInput | None]) -> list[Image.Image]:
    """What strength 0 or an empty mask returns: each input as the output would frame it."""
    images = []
    for image, item in zip(request.init_images, prepared, strict=True):
        if item is None:
            images.append(flatten(image))
        else:
            images.append(item.base if item.base is not None else item.init)
    return images


def run_img2img(model: LoadedModel, job: Job, output: OutputOptions | None = None) -> GenerationResult:
    """Run an img2img or inpainting job to the end (or until interrupted).

    Args:
        model: the loaded checkpoint to use.
        job: ``job.request`` is an ``Img2ImgRequest``; hooks, progress and cancel token.
        output: where to save (A1111: ``outputs/img2img-images``); None keeps images in memory.

    Returns:
        The images with their seeds and infotexts. Strength 0 and an empty inpainting mask
        return the inputs without running the model (the latter with a notice).
    """
    started = time.monotonic()
    request: Img2ImgRequest = resolved_request(model, job.request)
    job.request = request
    seeds = ImageSeeds(request.seed, request.subseed, request.images_per_job)
    result = GenerationResult(request=request)
    for hook in job.hooks:  # scripts' own infotext keys, before the job's networks add theirs
        result.extra_parameters.update(hook.infotext)
    result.extra_parameters.update(module_parameters(model.part_files))  # FLUX's VAE and text encoders
    prepared = [prepare_input(request, image) for image in request.init_images]
    if any(item is None for item in prepared) or request.steps_to_run() == 0:
        if any(item is None for item in prepared):
            result.notices.append(EMPTY_MASK_NOTICE)
        originals = _unchanged_inputs(request, prepared)
        for k, (seed, subseed) in enumerate(zip(seeds.seeds, seeds.subseeds, strict=True)):
            _record(model, result, originals[k % len(originals)], seed, subseed, output)
        result.duration_s = time.monotonic() - started
        return result
    hooks = HookDispatcher(job.hooks)
    with job_networks(model, result) as networks, torch.inference_mode(), \
            job_unet(model, hooks, result) as unet:
        # The schedule spans the steps that run, so [a:b:0.5] switches half-way through them.
        conds = batch_conditioning(model, request, request.steps_to_run(), networks)

        def one_batch(batch_index: int) -> None:
            if hooks:
                hooks.process_batch(batch_index, tuple(seeds.batch(batch_index, request.batch_size)[0]))
            first = batch_index * request.batch_size
            items = [prepared[(first + k) % len(prepared)] for k in range(request.batch_size)]
            batch = _encode_batch(model, request, items)  # type: ignore[arg-type]
            latents, interrupted = run_until_interrupted(
                lambda: _run_batch(model, job, batch_index, seeds, batch, conds, hooks, unet))
            pixels = decode_latents(model.pipeline.vae, latents)
            batch_seeds, batch_subseeds = seeds.batch(batch_index, request.batch_size)
            for item, image, seed, subseed in zip(items, to_pil_images(pixels), batch_seeds, batch_subseeds,
                                                  strict=True):
                image = finish_output(item, image)  # type: ignore[arg-type]
                _record(model, result, hooks.postprocess_image(image, seed) if hooks else image, seed, subseed,
                        output, hooks)
            if interrupted:
                raise JobInterrupted("interrupted")
            if hooks:
                hooks.postprocess_batch(batch_index, result.images[-request.batch_size:])

        run_batches(result, request.batch_count, one_batch, job.cancel)
    result.hook_errors = list(hooks.errors)
    result.duration_s = time.monotonic() - started
    return result
