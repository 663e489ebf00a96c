"""A1111's Extras and model-memory routes: ``/extra-single-image``, ``/extra-batch-images``,
``/upscalers``, ``/latent-upscale-modes``, ``/memory``, ``/unload-checkpoint``, ``/reload-checkpoint``.

Extras jobs go through the studio's queue like generations; bad fields answer 422 naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException

from modules.api.jobs import failed_job_error, http_error
from modules.models.files import ModelFileError
from modules.models.memory import memory_usage
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.generation.hires import LATENT_UPSCALE_MODES
from modules.processing.intake.image_input import PixelBudget
from modules.processing.jobs.queue import JobStatus
from modules.processing.output.image_formats import encode_base64

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["add_extras_routes"]

_IMAGE_FIELDS = ("image", "imageList")


def _run(studio: Studio, submit: Callable[[], str]) -> JobStatus:
    """Submit, wait, and return the finished job; errors as HTTP statuses."""
    try:
        job_id = submit()
    except (RequestValidationError, ProcessingError) as error:
        raise http_error(error) from None
    status = studio.wait(job_id)
    if status.state == "failed":  # 422 for an upscaler file that will not load, 500 for our faults
        raise failed_job_error(status)
    if status.result is None:
        raise HTTPException(409, f"job {job_id} was cancelled before it started")
    return status


def _counted(budget: PixelBudget, image: Any, field: str) -> Any:
    """``image`` counted against the request's pixel budget (HTTP 422 naming ``field`` once over)."""
    try:
        return budget.take(image, field)
    except RequestValidationError as error:
        raise http_error(error) from None


def _messages(status: JobStatus) -> dict[str, list[str]]:
    """Our additions to A1111's extras answer: what did not run, and what the reader ignored."""
    return {"notices": list(status.result.notices), "warnings": list(status.warnings)}


def _settings(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise HTTPException(422, "body: must be a JSON object")
    return {k: v for k, v in payload.items() if k not in _IMAGE_FIELDS}


def _extras(router: APIRouter, studio: Studio, decode: Callable[[Any, str], Any]) -> None:
    @router.post("/extra-single-image")
    def extra_single_image(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        settings = _settings(payload)
        image = decode(payload.get("image"), "image")
        status = _run(studio, lambda: studio.submit_extras(settings, [("image", image)]))
        result, image_format = status.result, studio.image_format()
        return {"html_info": result.infotexts[0],
                "image": encode_base64(result.images[0], result.infotexts[0], image_format), **_messages(status)}

    @router.post("/extra-batch-images")
    def extra_batch_images(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        settings = _settings(payload)
        entries = payload.get("imageList")
        if not isinstance(entries, list) or not entries:
            raise HTTPException(422, "imageList: must be a list of {data, name} objects")
        images, budget = [], PixelBudget()
        for k, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise HTTPException(422, f"imageList.{k}: must be an object with data and name")
            field = f"imageList.{k}.data"
            image = _counted(budget, decode(entry.get("data"), field), field)
            images.append((str(entry.get("name") or f"image{k}"), image))
        status = _run(studio, lambda: studio.submit_extras(settings, images))
        result, image_format = status.result, studio.image_format()
        return {"html_info": "\n".join(result.infotexts),
                "images": [encode_base64(image, info, image_format) for image, info in zip(result.images,
                                                                                           result.infotexts,
                                                                                           strict=True)],
                **_messages(status)}


def add_extras_routes(router: APIRouter, studio: Studio, decode: Callable[[Any, str], Any]) -> None:
    """Add the routes to ``router`` (the ``/sdapi/v1`` one); ``decode`` reads a base64 image field."""
    _extras(router, studio, decode)
    library = studio.context.upscalers

    @router.get("/upscalers")
    def upscalers() -> list[dict[str, Any]]:
        library.refresh()
        return [{"name": name, "model_name": name if library.path(name) else None,
                 "model_path": str(library.path(name)) if library.path(name) else None, "model_url": None,
                 "scale": None} for name in library.names()]

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes() -> list[dict[str, str]]:
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/memory")
    def memory() -> dict[str, Any]:
        return memory_usage([(m.name, m.pipeline, m.denoising_module.device) for m in studio.context.models.loaded])

    @router.post("/unload-checkpoint")
    def unload_checkpoint() -> dict[str, Any]:
        studio.context.models.unload_all()
        return {}

    @router.post("/reload-checkpoint")
    def reload_checkpoint() -> dict[str, Any]:
        studio.ensure_libraries()
        try:
            studio.context.models.reload_current()
        except ModelFileError as error:  # the file changed on disk into one that will not load
            raise HTTPException(503, f"the checkpoint {error.public_message}") from None
        return {}
