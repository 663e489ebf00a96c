"""The work behind ``aigen generate``: payload to request, model, job with a progress bar,
and images written where ``--out`` says."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from modules.app import AppContext
from modules.models.files import ModelFileError
from modules.models.registry import ModelNotFoundError, native_resolution
from modules.processing.api_fields import TXT2IMG_API_FIELDS, txt2img_request_from_api
from modules.processing.api_fields_img2img import IMG2IMG_API_FIELDS, img2img_request_from_api
from modules.processing.dynamic_prompts import has_dynamic_syntax, run_with_dynamic_prompts
from modules.processing.errors import RequestValidationError
from modules.processing.grids import GridOptions, add_batch_grid
from modules.processing.img2img import run_img2img
from modules.processing.img2img_request import Img2ImgRequest
from modules.processing.job import Job, ProgressUpdate
from modules.processing.saving import save_image
from modules.processing.styles import StyleStore
from modules.processing.txt2img import GenerationResult, OutputOptions, run_txt2img
from modules.settings import Settings
from modules.submission import image_format, read_submission

__all__ = ["exit_code_for", "run_generate"]

logger = logging.getLogger(__name__)


def exit_code_for(error: Exception) -> tuple[int, str]:
    """Exit code and one-line message for an error raised while generating."""
    if isinstance(error, RequestValidationError):
        return 2, str(error)
    if isinstance(error, FileExistsError):
        return 2, f"--out: {error.filename} exists already; choose another file or a folder"
    if isinstance(error, (ModelNotFoundError, ModelFileError)):
        return 1, str(error).splitlines()[0]
    logger.exception("generation failed")
    return 1, f"{type(error).__name__}: {error}"


def _exact_targets(out: Path, count: int) -> list[Path]:
    """File names for ``--out something.png``: that name, or name-1.png, name-2.png, ..."""
    if count == 1:
        targets = [out]
    else:
        targets = [out.with_name(f"{out.stem}-{k + 1}{out.suffix}") for k in range(count)]
    for target in targets:
        if target.exists():
            raise FileExistsError(0, "exists", str(target))
    return targets


class _ProgressBar:
    """A tqdm bar on stderr over all steps of all batches."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, file=sys.stderr, unit="it", desc="txt2img", leave=False)
        self._done = 0

    def __call__(self, update: ProgressUpdate) -> None:
        done = update.batch_index * update.total_steps + update.step
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        self._bar.close()


def run_generate(context: AppContext, payload: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Generate from an A1111-style payload; returns the summary printed as JSON.

    Raises:
        RequestValidationError, ModelNotFoundError, ModelFileError, FileExistsError.
    """
    is_img2img = "init_images" in payload
    kind, known = ("img2img", IMG2IMG_API_FIELDS) if is_img2img else ("txt2img", TXT2IMG_API_FIELDS)
    submission = read_submission(payload, known, kind, StyleStore(context.paths.styles))
    for warning in submission.warnings:  # the tolerant reader ran without these
        print(f"aigen: warning: {warning}", file=sys.stderr)
    payload = submission.payload
    if "width" not in payload and "height" not in payload:
        # Unlike A1111's fixed 512, a size left out is the checkpoint's own (128 for the demo model);
        # img2img keeps the input's size, rounded down to a multiple of 8.
        payload = {**payload, **_default_size(context, payload, is_img2img)}
    request = img2img_request_from_api(payload) if is_img2img else txt2img_request_from_api(payload)
    exact = out is not None and out.suffix.lower() == ".png"
    targets = _exact_targets(out, request.images_per_job) if exact and out is not None else []
    # The CLI's user owns the machine: their --model may be a path to a file anywhere.
    checkpoint = context.registry.find(request.checkpoint, allow_path=True) if request.checkpoint else None
    model = context.models.get(checkpoint, request.vae)
    file_format = image_format(Settings(), submission.output_overrides)
    if out is None:
        folder = "img2img-images" if is_img2img else "txt2img-images"
        output: OutputOptions | None = OutputOptions(context.paths.outputs / folder, image_format=file_format)
    else:
        output = None if exact else OutputOptions(out, date_subfolder=False, image_format=file_format)
    steps = request.steps_to_run() if isinstance(request, Img2ImgRequest) else request.num_inference_steps
    # Wildcard jobs run image by image, each reported as one batch.
    dynamic = has_dynamic_syntax(request.prompt) or has_dynamic_syntax(request.negative_prompt)
    progress = _ProgressBar(steps * (request.images_per_job if dynamic else request.batch_count))
    run = run_img2img if is_img2img else run_txt2img
    try:
        result = run_with_dynamic_prompts(run, model, Job(request, on_progress=progress), output,
                                          context.paths.wildcards)
    finally:
        progress.close()
    if exact:
        result.paths = [save_image(image, target.parent, "", info, exact_path=target)
                        for image, info, target in zip(result.images, result.infotexts, targets, strict=False)]
    grid = None
    if out is None:  # A1111's folders: a job of several images saves their grid too (grid_save)
        grids = context.paths.outputs / ("img2img-grids" if is_img2img else "txt2img-grids")
        grid = add_batch_grid(result, GridOptions(show=False, save=Settings().grid_save, folder=grids))
    result.notices[:0] = submission.notices
    return {**_summary(result), "grid": str(grid) if grid else None, "warnings": list(submission.warnings)}


def _default_size(context: AppContext, payload: dict[str, Any], is_img2img: bool) -> dict[str, int]:
    if is_img2img:
        image = img2img_request_from_api({**payload, "width": 64, "height": 64}).init_images[0]
        return {"width": max(64, image.width // 8 * 8), "height": max(64, image.height // 8 * 8)}
    checkpoint = txt2img_request_from_api(payload).checkpoint
    side = native_resolution(context.models.resolve(context.registry.find(checkpoint, allow_path=True)
                                                    if checkpoint else None))
    return {"width": side, "height": side}


def _summary(result: GenerationResult) -> dict[str, Any]:
    return {
        "paths": [str(p) for p in result.paths],
        "seeds": result.seeds,
        "infotexts": result.infotexts,
        "infotext": result.infotexts[0] if result.infotexts else "",
        "interrupted": result.interrupted,
        "hook_errors": result.hook_errors,
        "notices": result.notices,
    }
