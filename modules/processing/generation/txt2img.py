"""txt2img: run a ``Txt2ImgRequest`` as a job on a loaded model.

1. Resolve random seeds, so the infotext records the real ones.
2. Encode the prompts once per job.
3. Per batch: per-image CPU noise, a fresh scheduler, the denoising loop, VAE decode.
4. Per image: infotext, optional atomic save.
Interrupt stops the job and keeps the batches already finished; skip drops the current batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image

from modules.families.sdxl import micro_conditioning
from modules.models.loader import LoadedModel
from modules.models.patches import patched_unet
from modules.processing.editing.img2img_inputs import pixels_to_tensor
from modules.processing.errors import BatchSkipped, DenoiseInterrupted, JobInterrupted
from modules.processing.generation.hires import ImageUpscale, resize_pixels, upscale_latents
from modules.processing.generation.vae import circular_padding, decode_latents, encode_pixels, to_pil_images
from modules.processing.jobs.job import CancelToken, Job, ProgressUpdate
from modules.processing.output.image_formats import PNG, ImageFormat
from modules.processing.output.infotext import build_infotext
from modules.processing.output.request_infotext import module_parameters, txt2img_parameters
from modules.processing.output.saving import date_folder, save_image
from modules.processing.prompts.extra_networks import JobNetworks, extra_networks_applied
from modules.processing.prompts.family_prompts import family_prompt_encoder
from modules.processing.prompts.prompt_conditioning import ScheduledConditioning
from modules.processing.requests import DEFAULT_DISTILLED_CFG_SCALE, Txt2ImgRequest
from modules.processing.sampling.denoise import DenoiseInputs, denoise
from modules.processing.sampling.flow_samplers import FlowSamplerSpec
from modules.processing.sampling.hooks import HookDispatcher
from modules.processing.sampling.job_schedulers import (
    FLOW_AUTOMATIC_SCHEDULE,
    noised_to,
    pass_scheduler,
    starting_noise,
)
from modules.processing.sampling.samplers import SamplerSpec
from modules.processing.sampling.seeds import (
    ImageSeeds,
    create_initial_noise,
    generator_device,
    image_generators,
    resolve_seed,
    sampler_generators,
)

__all__ = ["GenerationResult", "OutputOptions", "batch_conditioning", "job_networks", "job_unet", "record_image",
           "resolved_request", "run_batches", "run_txt2img", "sampler_step_kwargs", "sdxl_time_ids"]

logger = logging.getLogger(__name__)
#: A txt2img request or one of its subclasses (Img2ImgRequest).
RequestT = TypeVar("RequestT", bound=Txt2ImgRequest)


@dataclass(frozen=True)
class OutputOptions:
    """Where and whether to save.

    ``folder`` is the tab's folder (A1111: ``outputs/txt2img-images``); images go into a
    ``YYYY-MM-DD`` subfolder of it unless ``date_subfolder`` is off (A1111 ``save_to_dirs``).
    ``embed_infotext`` off leaves the file without its infotext; ``image_format`` is A1111's
    "File format for images" (PNG, JPEG or WEBP).
    """

    folder: Path
    save: bool = True
    date_subfolder: bool = True
    embed_infotext: bool = True
    image_format: ImageFormat = PNG

    def target(self) -> Path:
        return date_folder(self.folder.parent, self.folder.name) if self.date_subfolder else self.folder


@dataclass
class GenerationResult:
    """What a job produced. ``request`` has the resolved (non-random) seeds; ``notices`` are
    messages for the user about inputs that changed what ran (an empty inpainting mask, a
    LoRA not found); ``extra_parameters`` go into every image's infotext ("Lora hashes")."""

    request: Txt2ImgRequest
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    #: A1111's batch grids saved with the images (not in ``paths``, which are the images').
    grid_paths: list[Path] = field(default_factory=list)
    interrupted: bool = False
    skipped_batches: list[int] = field(default_factory=list)
    hook_errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    extra_parameters: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    #: How many grids come before the images (A1111's ``index_of_first_image``).
    index_of_first_image: int = 0

    def add_image(self, image: Image.Image, seed: int, subseed: int, infotext: str,
                  output: OutputOptions | None) -> Path | None:
        """Record one finished image, and save it (atomically, named by seed) if ``output`` says so;
        returns the saved file, or None."""
        self.images.append(image)
        self.seeds.append(seed)
        self.subseeds.append(subseed)
        self.infotexts.append(infotext)
        if output is None or not output.save:
            return None
        embedded = infotext if output.embed_infotext else None
        self.paths.append(save_image(image, output.target(), str(seed), embedded, image_format=output.image_format))
        return self.paths[-1]

    def prepend_grid(self, grid: Image.Image, infotext: str = "") -> None:
        """Put ``grid`` first, as A1111 shows a grid before the images (with the first image's
        seeds, and its infotext unless another is given); ``index_of_first_image`` counts it."""
        self.images.insert(0, grid)
        self.index_of_first_image += 1
        self.seeds.insert(0, self.seeds[0] if self.seeds else -1)
        self.subseeds.insert(0, self.subseeds[0] if self.subseeds else -1)
        self.infotexts.insert(0, infotext or (self.infotexts[0] if self.infotexts else ""))

    def extend(self, part: GenerationResult) -> None:
        """Append the images (and messages) of a part of this job run on its own."""
        for name in ("images", "seeds", "subseeds", "infotexts", "paths", "grid_paths", "skipped_batches",
                     "hook_errors", "notices"):
            getattr(self, name).extend(getattr(part, name))
        self.interrupted = self.interrupted or part.interrupted


def batch_conditioning(model: LoadedModel, request: Txt2ImgRequest, steps: int,
                       networks: JobNetworks) -> ScheduledConditioning:
    """The job's per-step text conditioning over a pass of ``steps`` steps (no negative at CFG 1),
    with the embeddings of ``networks`` (and its LoRAs already applied to the text encoders)."""
    return ScheduledConditioning(model.pipeline, request.prompt, request.negative_prompt, steps, request.batch_size,
                                 request.clip_skip, use_cfg=request.guidance_scale != 1.0, emphasis=request.emphasis,
                                 embeddings=networks.embeddings,
                                 encode=family_prompt_encoder(model, request.batch_size))


@contextlib.contextmanager
def job_networks(model: LoadedModel, result: GenerationResult) -> Iterator[JobNetworks]:
    """The request's LoRAs applied to ``model`` for the block; notices and infotext go to ``result``."""
    request = result.request
    with extra_networks_applied(model, [request.prompt, request.negative_prompt]) as networks:
        result.notices.extend(networks.notices)
        result.extra_parameters.update(networks.infotext)
        yield networks


def resolved_request(model: LoadedModel, request: RequestT) -> RequestT:
    """``request`` as the job runs it, with every "the default" settled so the infotext records it:
    random seeds (-1) drawn, "Distilled CFG Scale" set to its default on guidance-distilled
    models (FLUX.1-dev) and dropped on the others, which have no such input (so SD infotexts
    do not gain the key), and a flow model's "Automatic" schedule named."""
    distilled = None
    hires = request.hires
    if model.family.capabilities.distilled_guidance:
        distilled = (DEFAULT_DISTILLED_CFG_SCALE if request.distilled_cfg_scale is None
                     else request.distilled_cfg_scale)
    elif hires is not None and hires.distilled_cfg_scale is not None:
        hires = dataclasses.replace(hires, distilled_cfg_scale=None)
    scheduler = request.scheduler
    if model.family.prediction == "flow" and scheduler == "Automatic":
        scheduler = FLOW_AUTOMATIC_SCHEDULE
    return dataclasses.replace(request, seed=resolve_seed(request.seed), subseed=resolve_seed(request.subseed),
                               distilled_cfg_scale=distilled, scheduler=scheduler, hires=hires)


@contextlib.contextmanager
def job_unet(model: LoadedModel, hooks: HookDispatcher, result: GenerationResult) -> Iterator[Any]:
    """The denoiser the job's passes call, as a UNet is called: the shared UNet (or the family's
    adapter around its transformer), or a weight-sharing clone of it with the hooks' model patches
    (``Script.patch_model``), dropped after the job; the patches' infotext keys go into
    ``result``. Entered after the LoRAs and tiling are applied, so the clone has them too."""
    denoiser = model.denoiser(model.denoising_module, result.request.distilled_cfg_scale)
    patches = hooks.model_patches(denoiser, model.family.id) if hooks else None
    if patches:
        result.extra_parameters.update(patches.infotext)
    with patched_unet(denoiser, patches) as unet:
        yield unet


def sdxl_time_ids(model: LoadedModel, request: Txt2ImgRequest) -> torch.Tensor | None:
    """The (B, 6) size/crop micro-conditioning of families that take it (SDXL), else None."""
    if not model.family.capabilities.micro_conditioning:
        return None
    return micro_conditioning(request.width, request.height, request.batch_size, model.device, model.dtype)


def _inpaint_channels(model: LoadedModel, request: Txt2ImgRequest) -> torch.Tensor | None:
    """For a 9-channel inpainting UNet in txt2img: everything masked over a neutral grey image.

    Returns (B, 5, H/8, W/8): the mask (all ones) and the grey image's latents, or None.
    """
    if not model.family.is_inpaint:
        return None
    grey = torch.zeros(1, 3, request.height, request.width)
    masked = encode_pixels(model.pipeline.vae, grey).to(model.device, model.dtype)
    mask = torch.ones(1, 1, *masked.shape[-2:], device=model.device, dtype=model.dtype)
    return torch.cat([mask, masked], dim=1).repeat(request.batch_size, 1, 1, 1)


def sampler_step_kwargs(spec: SamplerSpec | FlowSamplerSpec, scheduler: object, request: Txt2ImgRequest,
                        generators: list[torch.Generator]) -> dict[str, object]:
    accepted = inspect.signature(scheduler.step).parameters  # type: ignore[attr-defined]
    kwargs: dict[str, object] = {}
    if "generator" in accepted:
        kwargs["generator"] = generators
    if spec.uses_eta and request.eta is not None:
        kwargs["eta"] = request.eta
    return kwargs


def batch_noise(model: LoadedModel, request: Txt2ImgRequest, spec: SamplerSpec | FlowSamplerSpec,
                shape: tuple[int, int, int],
                seeds: Sequence[int], subseeds: Sequence[int], seed_resize_from: tuple[int, int] | None = None,
                ) -> tuple[torch.Tensor, list[torch.Generator]]:
    """A batch's initial noise (B, C, h, w), on the model's device and dtype, and the generators
    its sampler draws per-step noise from, with the request's RNG source and ENSD applied."""
    generators = image_generators(seeds, generator_device(request.randn_source, model.device))
    noise = create_initial_noise(shape, generators, subseeds, request.subseed_strength, seed_resize_from)
    delta = request.eta_noise_seed_delta if spec.uses_ensd else 0
    return noise.to(model.device, model.dtype), sampler_generators(seeds, generators, delta)


def _run_batch(model: LoadedModel, job: Job, batch_index: int, seeds: ImageSeeds,
               conds: ScheduledConditioning, hooks: HookDispatcher,
               extra_channels: torch.Tensor | None, unet: Any) -> torch.Tensor:
    """Denoise one batch with ``unet`` (the job's, see ``job_unet``); returns its latents (B, 4, H/8, W/8)."""
    request: Txt2ImgRequest = job.request
    batch_seeds, batch_subseeds = seeds.batch(batch_index, request.batch_size)
    factor = model.vae_scale_factor
    shape = (model.family.latent.channels, request.height // factor, request.width // factor)
    resize = None
    if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0:
        resize = (request.seed_resize_from_h // factor, request.seed_resize_from_w // factor)
    sampler = pass_scheduler(model.family, model.scheduler_config, request.sampler_name, request.scheduler,
                             request.num_inference_steps, shape[1:], model.device, batch_seeds)
    spec, scheduler = sampler.spec, sampler.scheduler
    noise, generators = batch_noise(model, request, spec, shape, batch_seeds, batch_subseeds, resize)
    inputs = DenoiseInputs(
        unet=unet, scheduler=scheduler,
        latents=starting_noise(scheduler, noise),
        cond=conds.at(0)[0], uncond=conds.at(0)[1], conds_at=conds.at, guidance_scale=request.guidance_scale,
        num_steps=request.num_inference_steps, time_ids=sdxl_time_ids(model, request),
        extra_channels=extra_channels,
        step_kwargs=sampler_step_kwargs(spec, scheduler, request, generators), seeds=tuple(batch_seeds), job_id=job.id,
    )

    def report(step: int, latents: torch.Tensor) -> None:
        if job.on_progress is not None:
            job.on_progress(ProgressUpdate(job.id, batch_index, request.batch_count, step, _steps_per_image(request),
                                           job.elapsed_s(), latents, model.family.id))

    return denoise(inputs, hooks, job.cancel.raise_if_cancelled, report)


def _steps_per_image(request: Txt2ImgRequest) -> int:
    """Sampling steps one batch runs: the first pass's, plus the hires pass's."""
    if request.hires is None:
        return request.num_inference_steps
    return request.num_inference_steps + request.hires.steps_to_run(request.num_inference_steps)[1]


def _hires_start(model: LoadedModel, request: Txt2ImgRequest, latents: torch.Tensor,
                 upscale: ImageUpscale | None) -> torch.Tensor:
    """The first pass's latents (B, 4, h, w) upscaled to the second pass's size, as latents."""
    hires = request.hires
    assert hires is not None
    cover_w, cover_h, width, height = hires.target_size(request.width, request.height)
    if hires.is_latent:
        return upscale_latents(latents, hires.upscaler, cover_w, cover_h, width, height, model.vae_scale_factor)
    images = to_pil_images(decode_latents(model.pipeline.vae, latents))
    images = resize_pixels(images, hires.upscaler, cover_w, cover_h, width, height, upscale)
    encoded = torch.cat([encode_pixels(model.pipeline.vae, pixels_to_tensor(image)) for image in images])
    return encoded.to(model.device, model.dtype)


def _hires_pass(model: LoadedModel, job: Job, batch_index: int, seeds: ImageSeeds, latents: torch.Tensor,
                conds: ScheduledConditioning, hooks: HookDispatcher, upscale: ImageUpscale | None,
                unet: Any) -> torch.Tensor:
    """Hires. fix on one batch: upscale the first pass's latents (B, 4, h, w), noise them to
    the hires denoising strength (fresh noise from the same seeds, as A1111) and denoise the
    last steps again at the new size. Returns the second pass's latents."""
    request: Txt2ImgRequest = job.request
    hires = request.hires
    assert hires is not None
    init = _hires_start(model, request, latents, upscale)
    total, steps_to_run = hires.steps_to_run(request.num_inference_steps)
    if steps_to_run == 0:
        return init
    _, _, width, height = hires.target_size(request.width, request.height)
    second = dataclasses.replace(hires.for_second_pass(request), width=width, height=height, hires=None)
    batch_seeds, batch_subseeds = seeds.batch(batch_index, request.batch_size)
    sampler = pass_scheduler(model.family, model.scheduler_config, second.sampler_name, second.scheduler, total,
                             tuple(init.shape[-2:]), model.device, batch_seeds, steps_to_run)
    spec, scheduler, start = sampler.spec, sampler.scheduler, sampler.start
    noise, generators = batch_noise(model, request, spec, tuple(init.shape[1:]), batch_seeds, batch_subseeds)
    start_latents = noised_to(scheduler, init, noise, scheduler.timesteps[start:start + 1])
    inputs = DenoiseInputs(
        unet=unet, scheduler=scheduler, latents=start_latents,
        cond=conds.at(0)[0], uncond=conds.at(0)[1], conds_at=conds.at, guidance_scale=second.guidance_scale,
        distilled_guidance=second.distilled_cfg_scale,
        num_steps=steps_to_run, time_ids=sdxl_time_ids(model, second), extra_channels=_inpaint_channels(model, second),
        step_kwargs=sampler_step_kwargs(spec, scheduler, second, generators), seeds=tuple(batch_seeds),
        job_id=job.id, start_index=start,
    )

    def report(step: int, current: torch.Tensor) -> None:
        if job.on_progress is not None:  # counted on from the first pass's steps
            done = request.num_inference_steps + step
            job.on_progress(ProgressUpdate(job.id, batch_index, request.batch_count, done, _steps_per_image(request),
                                           job.elapsed_s(), current, model.family.id))

    return denoise(inputs, hooks, job.cancel.raise_if_cancelled, report)


def _finish_images(model: LoadedModel, result: GenerationResult, pixels: torch.Tensor, batch_index: int,
                   seeds: ImageSeeds, output: OutputOptions | None, hooks: HookDispatcher) -> None:
    request = result.request
    batch_seeds, batch_subseeds = seeds.batch(batch_index, request.batch_size)
    vae_name = model.vae_file.name if model.vae_file else None
    for image, seed, subseed in zip(to_pil_images(pixels), batch_seeds, batch_subseeds, strict=True):
        image = hooks.postprocess_image(image, seed) if hooks else image
        params = txt2img_parameters(request, seed, subseed, model.name, model.short_hash, vae_name, model.vae_hash,
                                    result.extra_parameters)
        record_image(result, image, seed, subseed, params, output, hooks)


def record_image(result: GenerationResult, image: Image.Image, seed: int, subseed: int, params: dict[str, Any],
                 output: OutputOptions | None, hooks: HookDispatcher | None) -> None:
    """Add one finished image with the infotext of ``params``, and save it if ``output`` says so,
    letting the hooks change what is saved (``before_image_saved``) and see where (``image_saved``)."""
    request = result.request
    infotext = build_infotext(request.prompt, request.negative_prompt, params)
    if hooks and output is not None and output.save:
        image, infotext = hooks.before_image_saved(image, infotext)
    saved = result.add_image(image, seed, subseed, infotext, output)
    if saved is not None and hooks:
        hooks.image_saved(saved, image, infotext)


def run_batches(result: GenerationResult, batch_count: int, run_batch: Callable[[int], None],
                cancel: CancelToken | None = None) -> None:
    """Call ``run_batch(index)`` for each batch. Skip drops the current batch and goes on;
    interrupt stops the job, keeping the batches already finished (and the partly denoised
    images of the one it stopped, which ``run_batch`` records). No batch starts once ``cancel``
    is interrupted, as in A1111."""
    for batch_index in range(batch_count):
        if cancel is not None and cancel.is_interrupted:
            result.interrupted = True
            return
        try:
            run_batch(batch_index)
        except BatchSkipped:
            result.skipped_batches.append(batch_index)
        except JobInterrupted:
            result.interrupted = True
            return


def run_until_interrupted(run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """``run()``'s latents and False, or after an interrupt mid-pass the partly denoised latents
    it got to and True: A1111 returns those images, so the caller records them, then stops."""
    try:
        return run(), False
    except DenoiseInterrupted as stop:
        return stop.latents, True  # type: ignore[return-value]


def run_txt2img(model: LoadedModel, job: Job, output: OutputOptions | None = None,
                upscale: ImageUpscale | None = None) -> GenerationResult:
    """Run a txt2img job to the end (or until interrupted).

    Args:
        model: the loaded checkpoint to use.
        job: the request (``job.request`` is a ``Txt2ImgRequest``), hooks, progress and cancel token.
        output: where to save; None keeps the images in memory only.
        upscale: the image upscalers a Hires. fix may name (the latent modes need none).

    Returns:
        The images with their seeds, infotexts and saved paths.
    """
    started = time.monotonic()
    request: Txt2ImgRequest = resolved_request(model, job.request)
    job.request = request
    seeds = ImageSeeds(request.seed, request.subseed, request.images_per_job)
    hooks = HookDispatcher(job.hooks)
    result = GenerationResult(request=request)
    for hook in job.hooks:  # scripts' own infotext keys, before the job's networks add theirs
        result.extra_parameters.update(hook.infotext)
    result.extra_parameters.update(module_parameters(model.part_files))  # FLUX's VAE and text encoders
    tiling = circular_padding(model.denoising_module, model.pipeline.vae) if request.tiling else (
        contextlib.nullcontext())
    # LoRAs are injected outside inference mode: their parameters must stay ordinary tensors.
    with job_networks(model, result) as networks, tiling, torch.inference_mode(), \
            job_unet(model, hooks, result) as unet:
        conds = batch_conditioning(model, request, request.num_inference_steps, networks)
        hires_conds = None
        if request.hires is not None:  # its prompts, over the steps it runs
            second = request.hires.for_second_pass(request)
            hires_conds = batch_conditioning(model, second, request.hires.steps_to_run(second.num_inference_steps)[1]
                                             or 1, networks)
        extra_channels = _inpaint_channels(model, request)

        def one_batch(batch_index: int) -> None:
            if hooks:
                hooks.process_batch(batch_index, tuple(seeds.batch(batch_index, request.batch_size)[0]))
            latents, interrupted = run_until_interrupted(
                lambda: _run_batch(model, job, batch_index, seeds, conds, hooks, extra_channels, unet))
            if hires_conds is not None and not interrupted:
                latents, interrupted = run_until_interrupted(
                    lambda: _hires_pass(model, job, batch_index, seeds, latents, hires_conds, hooks, upscale, unet))
            pixels = decode_latents(model.pipeline.vae, latents)
            _finish_images(model, result, pixels, batch_index, seeds, output, hooks)
            if interrupted:
                raise JobInterrupted("interrupted")
            if hooks:
                hooks.postprocess_batch(batch_index, result.images[-request.batch_size:])

        run_batches(result, request.batch_count, one_batch, job.cancel)
    result.hook_errors = list(hooks.errors)
    result.duration_s = time.monotonic() - started
    return result
