"""Named gradio_client endpoints with named parameters (A1111 field names).

Each endpoint is declared with ``gr.api`` from a typed function, so its name and parameters
never depend on which components or extensions the page has (A1111's positional
``fn_index`` API shifted whenever they changed). Forge's ``distilled_cfg_scale`` (FLUX.1-dev;
None: the model's default) is each generation endpoint's last parameter, so positional calls
written before it keep their meaning (gradio_client fills the defaults; a raw
``/gradio_api/call`` request sends every value, the new one included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.intake.image_input import decode_base64_image, png_base64
from modules.processing.output.image_formats import embedded_infotext
from modules.processing.output.infotext import parse_infotext
from modules.ui.generation_form import prompt_plan

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["register_api"]

Endpoint = Callable[..., Any]


def _decode_image(data: str, field: str = "image") -> Image.Image:
    try:
        return decode_base64_image(data, field)
    except RequestValidationError as error:
        raise gr.Error(str(error)) from None


def _with_overrides(payload: dict[str, Any], sd_model_checkpoint: str, sd_vae: str) -> dict[str, Any]:
    """The payload with A1111's ``override_settings`` for the checkpoint/VAE named (empty: the current one)."""
    overrides = {k: v for k, v in (("sd_model_checkpoint", sd_model_checkpoint), ("sd_vae", sd_vae)) if v}
    return {**payload, "override_settings": overrides} if overrides else payload


def _with_scripts(payload: dict[str, Any], script_name: str, script_args: Any, alwayson_scripts: Any,
                  ) -> dict[str, Any]:
    """The payload with A1111's script fields: ``script_name`` with ``script_args`` (an object by
    argument name, or A1111's positional list), and ``alwayson_scripts`` keyed by script title."""
    fields = {"alwayson_scripts": alwayson_scripts} if alwayson_scripts else {}
    if script_name:
        fields.update(script_name=script_name, script_args=script_args or {})
    return {**payload, **fields}


def _generate(studio: Studio, submit: Callable[[dict[str, Any]], str], payload: dict[str, Any]) -> dict[str, Any]:
    """Queue a payload, wait for it, and return the images as base64 PNGs with their infotexts."""
    try:
        job_id = submit(payload)
    except RequestValidationError as error:
        raise gr.Error(f"{error.field}: {error.message}") from None
    except ProcessingError as error:
        raise gr.Error(str(error)) from None
    status = studio.wait(job_id)
    if status.state == "failed":
        raise gr.Error(status.public_error or "generation failed")
    result = status.result
    if result is None:
        raise gr.Error(f"job {job_id} was cancelled before it started")
    # An interrupted job brings the images it got to (partly denoised), as A1111's do. Like the
    # gallery, a job of several images starts with their grid: index_of_first_image says so.
    images = [png_base64(image, info) for image, info in zip(result.images, result.infotexts, strict=True)]
    return {"job_id": job_id, "images": images, "infotexts": result.infotexts, "seeds": result.seeds,
            "index_of_first_image": result.index_of_first_image,
            "interrupted": result.interrupted, "paths": [str(p) for p in result.paths], "notices": result.notices,
            "warnings": list(status.warnings)}


def _status_dict(studio: Studio, job_id: str) -> dict[str, Any]:
    try:
        status = studio.status(job_id)
    except KeyError:
        raise gr.Error(f"job_id: no job {job_id!r}") from None
    return {
        "job_id": status.job_id, "state": status.state, "position": status.position, "step": status.step,
        "total_steps": status.total_steps, "progress": status.fraction, "eta": status.eta_s,
        "error": status.public_error,
    }


def _generation_endpoints(studio: Studio) -> tuple[Endpoint, ...]:
    """/txt2img, /img2img and /inpaint: each waits for its job (so they are queued)."""

    def txt2img(prompt: str = "", negative_prompt: str = "", steps: int = 20, sampler_name: str = "DPM++ 2M",
                scheduler: str = "Automatic", cfg_scale: float = 7.0, seed: int = -1, subseed: int = -1,
                subseed_strength: float = 0.0, width: int = 512, height: int = 512, batch_size: int = 1,
                n_iter: int = 1, seed_resize_from_w: int = 0, seed_resize_from_h: int = 0, tiling: bool = False,
                sd_model_checkpoint: str = "", sd_vae: str = "", styles: list[str] | None = None,
                script_name: str = "", script_args: dict[str, Any] | list[Any] | None = None,
                alwayson_scripts: dict[str, Any] | None = None,
                distilled_cfg_scale: float | None = None) -> dict[str, Any]:
        """Generate images from text; returns base64 PNGs (with infotext), seeds and infotexts."""
        payload: dict[str, Any] = {
            "prompt": prompt, "negative_prompt": negative_prompt, "steps": steps, "sampler_name": sampler_name,
            "scheduler": scheduler, "cfg_scale": cfg_scale, "seed": seed, "subseed": subseed,
            "subseed_strength": subseed_strength, "width": width, "height": height, "batch_size": batch_size,
            "n_iter": n_iter, "seed_resize_from_w": seed_resize_from_w, "seed_resize_from_h": seed_resize_from_h,
            "tiling": tiling, "styles": styles or [], "distilled_cfg_scale": distilled_cfg_scale,
        }
        return _generate(studio, studio.submit_txt2img, _with_overrides(
            _with_scripts(payload, script_name, script_args, alwayson_scripts), sd_model_checkpoint, sd_vae))

    def img2img(image: str, prompt: str = "", negative_prompt: str = "", denoising_strength: float = 0.75,
                resize_mode: int = 0, steps: int = 20, sampler_name: str = "DPM++ 2M", scheduler: str = "Automatic",
                cfg_scale: float = 7.0, seed: int = -1, subseed: int = -1, subseed_strength: float = 0.0,
                width: int = 512, height: int = 512, batch_size: int = 1, n_iter: int = 1,
                seed_resize_from_w: int = 0, seed_resize_from_h: int = 0, tiling: bool = False,
                sd_model_checkpoint: str = "", sd_vae: str = "", styles: list[str] | None = None,
                script_name: str = "", script_args: dict[str, Any] | list[Any] | None = None,
                alwayson_scripts: dict[str, Any] | None = None,
                distilled_cfg_scale: float | None = None) -> dict[str, Any]:
        """Generate from a base64 image and text; returns base64 PNGs (with infotext), seeds and infotexts.

        ``resize_mode``: 0 Just resize, 1 Crop and resize, 2 Resize and fill, 3 Just resize (latent upscale).
        """
        payload: dict[str, Any] = {
            "init_images": [_decode_image(image, "image")], "prompt": prompt, "negative_prompt": negative_prompt,
            "denoising_strength": denoising_strength, "resize_mode": resize_mode, "steps": steps,
            "sampler_name": sampler_name, "scheduler": scheduler, "cfg_scale": cfg_scale, "seed": seed,
            "subseed": subseed, "subseed_strength": subseed_strength, "width": width, "height": height,
            "batch_size": batch_size, "n_iter": n_iter, "seed_resize_from_w": seed_resize_from_w,
            "seed_resize_from_h": seed_resize_from_h, "tiling": tiling, "styles": styles or [],
            "distilled_cfg_scale": distilled_cfg_scale,
        }
        return _generate(studio, studio.submit_img2img, _with_overrides(
            _with_scripts(payload, script_name, script_args, alwayson_scripts), sd_model_checkpoint, sd_vae))

    def inpaint(image: str, mask: str, prompt: str = "", negative_prompt: str = "", denoising_strength: float = 0.75,
                mask_blur: int = 4, inpainting_mask_invert: int = 0, inpainting_fill: int = 1,
                inpaint_full_res: bool = False, inpaint_full_res_padding: int = 32, resize_mode: int = 0,
                steps: int = 20, sampler_name: str = "DPM++ 2M", scheduler: str = "Automatic", cfg_scale: float = 7.0,
                seed: int = -1, subseed: int = -1, subseed_strength: float = 0.0, width: int = 512,
                height: int = 512, batch_size: int = 1, n_iter: int = 1, seed_resize_from_w: int = 0,
                seed_resize_from_h: int = 0, tiling: bool = False, sd_model_checkpoint: str = "", sd_vae: str = "",
                styles: list[str] | None = None, script_name: str = "",
                script_args: dict[str, Any] | list[Any] | None = None,
                alwayson_scripts: dict[str, Any] | None = None,
                distilled_cfg_scale: float | None = None) -> dict[str, Any]:
        """Repaint the white area of a base64 mask over a base64 image (A1111's inpaint fields; the
        defaults are the UI's: original content, whole picture).

        ``inpainting_fill``: 0 fill, 1 original, 2 latent noise, 3 latent nothing;
        ``inpainting_mask_invert``: 1 repaints the black area instead; ``inpaint_full_res``: "Only masked".
        """
        payload: dict[str, Any] = {
            "init_images": [_decode_image(image, "image")], "mask": _decode_image(mask, "mask"), "prompt": prompt,
            "negative_prompt": negative_prompt, "denoising_strength": denoising_strength, "mask_blur": mask_blur,
            "inpainting_mask_invert": inpainting_mask_invert, "inpainting_fill": inpainting_fill,
            "inpaint_full_res": inpaint_full_res, "inpaint_full_res_padding": inpaint_full_res_padding,
            "resize_mode": resize_mode, "steps": steps, "sampler_name": sampler_name, "scheduler": scheduler,
            "cfg_scale": cfg_scale, "seed": seed, "subseed": subseed, "subseed_strength": subseed_strength,
            "width": width, "height": height, "batch_size": batch_size, "n_iter": n_iter,
            "seed_resize_from_w": seed_resize_from_w, "seed_resize_from_h": seed_resize_from_h, "tiling": tiling,
            "styles": styles or [], "distilled_cfg_scale": distilled_cfg_scale,
        }
        return _generate(studio, studio.submit_img2img, _with_overrides(
            _with_scripts(payload, script_name, script_args, alwayson_scripts), sd_model_checkpoint, sd_vae))

    return txt2img, img2img, inpaint


def _instant_endpoints(studio: Studio) -> tuple[Endpoint, ...]:
    """The endpoints that answer at once: PNG info, prompt preview, job control, checkpoints."""

    def png_info(image: str) -> dict[str, Any]:
        """Read the A1111 infotext of a base64 image: {"info": text, "parameters": parsed fields}."""
        decoded = _decode_image(image)
        text = embedded_infotext(decoded)
        return {"info": text, "parameters": parse_infotext(text) if text.strip() else {}}

    def prompt_preview(prompt: str, steps: int = 20) -> dict[str, Any]:
        """What a prompt does over ``steps`` steps: schedule, AND sub-prompts, weights, 75-token chunks."""
        if not 1 <= steps <= 150:
            raise gr.Error(f"steps: must be between 1 and 150, got {steps}")
        studio.ensure_libraries()
        return prompt_plan(studio, prompt, steps)

    def interrupt(job_id: str = "") -> bool:
        """Stop a job (the running one when no id is given); False if there was none."""
        return studio.interrupt(job_id or None)

    def skip(job_id: str = "") -> bool:
        """Skip the current batch of a job (the running one when no id is given)."""
        return studio.skip(job_id or None)

    def progress(job_id: str = "") -> dict[str, Any]:
        """Progress of a job (the running one when no id is given)."""
        job_id = job_id or studio.queue.current_id() or ""
        if not job_id:
            return {"job_id": None, "state": "idle", "position": None, "progress": 0.0}
        return _status_dict(studio, job_id)

    def refresh_checkpoints() -> list[str]:
        """Rescan the checkpoint folders; returns the checkpoint titles."""
        return studio.refresh_checkpoints()

    def set_checkpoint(title: str) -> str:
        """Use this checkpoint for new jobs (name, title or short hash); returns its title."""
        try:
            return studio.set_checkpoint(title)
        except LookupError as error:
            raise gr.Error(str(error)) from None

    return png_info, prompt_preview, interrupt, skip, progress, refresh_checkpoints, set_checkpoint


def register_api(studio: Studio) -> None:
    """Declare the endpoints; call inside the app's ``gr.Blocks`` context."""
    for fn in _generation_endpoints(studio):
        gr.api(fn, api_name=fn.__name__, queue=True, concurrency_limit=None)
    for fn in _instant_endpoints(studio):
        gr.api(fn, api_name=fn.__name__, queue=False, concurrency_limit="default")
