"""Extras as a queued job: upscaling shares the device with generation, so it waits its turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modules.models.upscalers import UpscalerLibrary
from modules.processing.errors import RequestValidationError
from modules.processing.extras import ExtrasRequest, run_extras
from modules.processing.img2img_batch import image_files
from modules.processing.txt2img import GenerationResult, OutputOptions

__all__ = ["ExtrasJob", "images_in_folder"]


@dataclass(frozen=True)
class ExtrasJob:
    """The request of a queued Extras job: the settings, the named images, where to save."""

    request: ExtrasRequest
    images: tuple[tuple[str, Image.Image], ...]
    output: OutputOptions | None

    def run(self, library: UpscalerLibrary) -> GenerationResult:
        """Upscale every image; the result lists them with their infotexts and saved files
        (seeds are -1: nothing was sampled)."""
        results = run_extras(self.images, self.request, library, self.output)
        return GenerationResult(request=self,  # type: ignore[arg-type]
                                images=[r.image for r in results], infotexts=[r.infotext for r in results],
                                paths=[r.path for r in results if r.path is not None],
                                seeds=[-1] * len(results), subseeds=[-1] * len(results))


def images_in_folder(folder: Path, field: str = "input_dir") -> list[tuple[str, Image.Image]]:
    """The images of ``folder`` (by file name; unreadable files skipped), for "Batch from Directory".

    Raises:
        RequestValidationError: the folder does not exist or holds no image.
    """
    images = []
    for path in image_files(folder, field):
        try:
            with Image.open(path) as opened:
                opened.load()
                images.append((path.name, opened.copy()))
        except OSError:
            continue
    if not images:
        raise RequestValidationError(field, f"{folder} holds no PNG, JPEG or WebP image")
    return images
