"""Batch img2img: every image of an input folder through the same settings, into an output
folder (A1111's Batch tab, "From directory"). A mask folder, when given, supplies each image's
mask by file name (any of the accepted extensions), which makes the batch an inpainting batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.errors import RequestValidationError
from modules.processing.generation.txt2img import GenerationResult, OutputOptions

__all__ = ["IMAGE_SUFFIXES", "Img2ImgBatchRequest", "batch_output", "image_files", "batch_request", "batch_stand_in",
           "run_img2img_batch"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Img2ImgBatchRequest:
    """``template``'s settings applied to each file of ``inputs`` (sorted by name).

    ``template`` was validated against the first input; ``masks`` maps an input's stem to
    its mask file. ``checkpoint``/``vae`` are read from the template by the model loader.
    """

    template: Img2ImgRequest
    inputs: tuple[Path, ...]
    output_dir: Path
    masks: dict[str, Path] = dataclasses.field(default_factory=dict)

    @property
    def checkpoint(self) -> str | None:
        return self.template.checkpoint

    @property
    def vae(self) -> str | None:
        return self.template.vae


def batch_stand_in() -> Image.Image:
    """A small image that stands in for the inputs while a batch's settings are validated."""
    return Image.new("RGB", (8, 8))


def image_files(folder: Path, field: str) -> list[Path]:
    """The PNG/JPEG/WebP files of ``folder`` by name; RequestValidationError(field) if it is no folder."""
    if not folder.is_dir():
        raise RequestValidationError(field, f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def batch_request(template: Img2ImgRequest, input_dir: Path, output_dir: Path,
                  mask_dir: Path | None = None) -> Img2ImgBatchRequest:
    """Check the folders and list the work; ``template`` holds every other setting.

    Raises:
        RequestValidationError: a folder is missing, the input folder has no images, or the
            output folder is the input folder (results would be read back as inputs).
    """
    inputs = image_files(input_dir, "input_dir")
    if not inputs:
        raise RequestValidationError("input_dir", f"{input_dir} holds no PNG, JPEG or WEBP images")
    if output_dir.resolve() == input_dir.resolve():
        raise RequestValidationError("output_dir", "must differ from the input folder")
    masks = {p.stem: p for p in image_files(mask_dir, "mask_dir")} if mask_dir else {}
    return Img2ImgBatchRequest(template, tuple(inputs), output_dir, masks)


def _file_request(batch: Img2ImgBatchRequest, path: Path) -> Img2ImgRequest:
    with Image.open(path) as opened:
        image = opened.convert("RGBA")
    mask = None
    if path.stem in batch.masks:
        with Image.open(batch.masks[path.stem]) as opened:
            mask = opened.convert("RGBA")
    return dataclasses.replace(batch.template, init_images=(image,), mask=mask)


def batch_output(batch: Img2ImgBatchRequest) -> OutputOptions:
    """Where a batch saves: straight into its output folder, no date subfolder (as A1111)."""
    return OutputOptions(batch.output_dir, date_subfolder=False)


def run_img2img_batch(batch: Img2ImgBatchRequest,
                      generate_file: Callable[[Img2ImgRequest], GenerationResult]) -> GenerationResult:
    """Run ``batch`` file by file: ``generate_file`` gets each file's img2img request (the
    caller runs it, with its scripts, saving into ``batch_output``). One unreadable file is
    reported in ``notices`` and skipped; an interrupted file stops the batch."""
    result = GenerationResult(request=batch.template)
    for path in batch.inputs:
        try:
            request = _file_request(batch, path)
        except (OSError, RequestValidationError) as error:
            result.notices.append(f"{path.name}: skipped ({error})")
            continue
        part = generate_file(request)
        result.extend(part)
        if part.interrupted:
            break
    return result
