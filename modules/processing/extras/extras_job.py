"""Extras as a queued job: upscaling shares the device with generation, so it waits its turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modules.models.upscalers import UpscalerLibrary
from modules.processing.editing.img2img_batch import image_files
from modules.processing.errors import RequestValidationError
from modules.processing.extras.extras import ExtrasRequest, check_extras_sizes, run_extras
from modules.processing.generation.txt2img import GenerationResult, OutputOptions
from modules.processing.intake.image_input import open_image_file

__all__ = ["ExtrasJob", "images_in_folder"]


@dataclass(frozen=True)
class ExtrasJob:
    """The request of a queued Extras job: the settings, the named images, where to save."""

    request: ExtrasRequest
    images: tuple[tuple[str, Image.Image], ...]
    output: OutputOptions | None

    def __post_init__(self) -> None:
        # Refused at submit time, before the job waits in the queue holding its images.
        check_extras_sizes(self.images, self.request, "imageList" if len(self.images) > 1 else "image")

    def run(self, library: UpscalerLibrary) -> GenerationResult:
        """Upscale every image; the result lists them with their infotexts and saved files
        (seeds are -1: nothing was sampled)."""
        results = run_extras(self.images, self.request, library, self.output)
        return GenerationResult(request=self,  # type: ignore[arg-type]
                                images=[r.image for r in results], infotexts=[r.infotext for r in results],
                                paths=[r.path for r in results if r.path is not None],
                                seeds=[-1] * len(results), subseeds=[-1] * len(results))


def images_in_folder(folder: Path, field: str = "input_dir") -> list[tuple[str, Image.Image]]:
    """The images of ``folder`` (by file name), for "Batch from Directory"; each is checked from
    its header (``MAX_INPUT_PIXELS``) before it is decoded, and unreadable or oversized files
    are skipped.

    Raises:
        RequestValidationError: the folder does not exist or holds no usable image (the first
            skipped file's reason is given).
    """
    images, skipped = [], []
    for path in image_files(folder, field):
        try:
            images.append((path.name, open_image_file(path, path.name)))
        except RequestValidationError as error:
            skipped.append(f"{path.name} {error.message}")
    if not images:
        reason = f" ({skipped[0]})" if skipped else ""
        raise RequestValidationError(field, f"{folder} holds no PNG, JPEG or WebP image it can use{reason}")
    return images
