"""A1111-compatible REST routes (``/sdapi/v1/...``) on the same server as the UI.

Existing A1111 clients post the same JSON and read the same response shapes. Validation
errors are HTTP 422 naming the field; the server never dies from a request. Generation goes
through the same job queue as the browser, so API and UI jobs run one at a time in order.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image

from modules.api.extras_routes import add_extras_routes
from modules.api.jobs import http_error
from modules.api.listings import add_listing_routes
from modules.api.networks import add_network_routes
from modules.extensions.job_scripts import describe_scripts
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.image_input import decode_base64_image, png_base64
from modules.processing.infotext import parse_infotext
from modules.processing.preview import latents_to_preview
from modules.processing.samplers import SAMPLERS, SCHEDULE_TYPES
from modules.settings import FOLDER_SETTINGS

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["build_router", "decode_image"]


def _auth_dependency(credentials: Sequence[tuple[str, str]]) -> Any:
    """HTTP Basic auth against ``credentials`` (constant-time compare); none = open."""
    if not credentials:
        return lambda: None
    basic = HTTPBasic()

    def check(given: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008 - FastAPI idiom
        ok = any(secrets.compare_digest(given.username.encode(), user.encode())
                 & secrets.compare_digest(given.password.encode(), password.encode())
                 for user, password in credentials)
        if not ok:
            raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})

    return check


def decode_image(data: Any, field: str = "image") -> Image.Image:
    """``decode_base64_image`` with its validation error as HTTP 422 (413 when too large)."""
    try:
        return decode_base64_image(data, field)
    except RequestValidationError as error:
        raise HTTPException(413 if "limit" in error.message else 422, str(error)) from None


def _generate(payload: dict[str, Any], submit: Callable[[dict[str, Any]], str], studio: Studio) -> dict[str, Any]:
    """Queue a txt2img/img2img payload with ``submit``, wait, and answer in A1111's shape."""
    if not isinstance(payload, dict):
        raise HTTPException(422, "body: must be a JSON object")
    # A1111's API defaults: images are not saved unless asked (``save_images``), and are sent back.
    payload = {"save_images": False, **payload}
    try:
        job_id = submit(payload)
    except (RequestValidationError, ProcessingError) as error:
        raise http_error(error) from None  # 422/413 naming the field, 429 when the queue is full
    status = studio.wait(job_id)
    if status.state == "failed":
        raise HTTPException(500, status.error or "generation failed")
    result = status.result
    images = [png_base64(image, info) for image, info in zip(result.images, result.infotexts, strict=True)]
    if payload.get("send_images") is False:
        images = []
    info = {"prompt": result.request.prompt, "negative_prompt": result.request.negative_prompt,
            "seed": result.seeds[0] if result.seeds else result.request.seed, "all_seeds": result.seeds,
            "all_subseeds": result.subseeds, "infotexts": result.infotexts, "job_id": job_id,
            "interrupted": result.interrupted, "notices": result.notices}
    # A1111 echoes the request but blanks the images, which would double the response.
    parameters = {k: None if k in ("init_images", "mask") else v for k, v in payload.items()}
    return {"images": images, "parameters": parameters, "info": json.dumps(info, ensure_ascii=False)}


def _progress(studio: Studio, skip_current_image: bool = False) -> dict[str, Any]:
    job_id = studio.queue.current_id()
    if job_id is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": {"job": "", "sampling_step": 0, "sampling_steps": 0,
                "interrupted": False, "skipped": False}, "current_image": None, "textinfo": None}
    status = studio.status(job_id)
    current_image = None
    if not skip_current_image and status.preview_latents is not None:
        # The cheap latent preview (no VAE decode), as the UI's live preview shows it.
        preview = latents_to_preview(status.preview_latents, status.family or "sd15")
        current_image = png_base64(preview.resize((preview.width * 8, preview.height * 8),
                                                  Image.Resampling.NEAREST), "")
    return {"progress": status.fraction, "eta_relative": status.eta_s or 0.0,
            "state": {"job": job_id, "job_count": status.batch_count, "job_no": status.batch_index,
                      "sampling_step": status.step, "sampling_steps": status.total_steps,
                      "interrupted": False, "skipped": False},
            "current_image": current_image, "textinfo": None}


def build_router(studio: Studio, credentials: Sequence[tuple[str, str]] = (),
                 flags: Mapping[str, Any] | None = None) -> APIRouter:
    """The ``/sdapi/v1`` routes, all behind the given HTTP Basic credentials (if any);
    ``flags`` (the parsed command line) answer ``/cmd-flags``, secrets hidden."""
    router = APIRouter(prefix="/sdapi/v1", dependencies=[Depends(_auth_dependency(credentials))])

    @router.post("/txt2img")
    def txt2img(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return _generate(payload, studio.submit_txt2img, studio)

    @router.post("/img2img")
    def img2img(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return _generate(payload, studio.submit_img2img, studio)

    @router.post("/png-info")
    def png_info(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        image = decode_image(payload.get("image"))
        text = str(image.info.get("parameters", ""))
        return {"info": text, "items": {k: v for k, v in image.info.items() if isinstance(v, str)},
                "parameters": parse_infotext(text) if text.strip() else {}}

    @router.get("/progress")
    def progress(skip_current_image: bool = False) -> dict[str, Any]:
        return _progress(studio, skip_current_image)

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        return {"interrupted": studio.interrupt()}

    @router.post("/skip")
    def skip() -> dict[str, Any]:
        return {"skipped": studio.skip()}

    _model_routes(router, studio)
    add_network_routes(router, studio)
    add_extras_routes(router, studio, decode_image)
    add_listing_routes(router, studio, flags or {})
    return router


def _model_routes(router: APIRouter, studio: Studio) -> None:
    @router.get("/samplers")
    def samplers() -> list[dict[str, Any]]:
        return [{"name": s.name, "aliases": list(s.aliases), "options": {"scheduler": s.default_schedule.lower()}}
                for s in SAMPLERS]

    @router.get("/schedulers")
    def schedulers() -> list[dict[str, Any]]:
        return [{"name": t.lower().replace(" ", "_"), "label": t} for t in SCHEDULE_TYPES]

    @router.get("/sd-models")
    def sd_models() -> list[dict[str, Any]]:
        registry = studio.context.registry
        return [{"title": registry.title(info), "model_name": info.path.stem, "filename": str(info.path),
                 "hash": registry.hashes.cached_short_hash(info.path), "sha256": None, "config": None}
                for info in studio.checkpoints()]

    @router.get("/scripts")
    def scripts() -> dict[str, list[str]]:
        info = describe_scripts(studio.context.scripts, studio.extension_setting_values())
        return {tab: [e["name"] for e in info if not e["is_alwayson"] and e["is_img2img"] == (tab == "img2img")]
                for tab in ("txt2img", "img2img")}

    @router.get("/script-info")
    def script_info() -> list[dict[str, Any]]:
        return describe_scripts(studio.context.scripts, studio.extension_setting_values())

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        studio.refresh_checkpoints()

    @router.get("/options")
    def get_options() -> dict[str, Any]:
        return dataclasses.asdict(studio.settings)

    @router.post("/options")
    def set_options(changes: dict[str, Any] = Body(...)) -> None:  # noqa: B008
        folders = sorted(FOLDER_SETTINGS & set(changes))
        if folders:
            raise HTTPException(422, f"{folders[0]}: folder settings are not settable over the API; "
                                     "change them in the Settings tab")
        if "sd_model_checkpoint" in changes:
            try:
                chosen = studio.set_checkpoint(str(changes["sd_model_checkpoint"]))
                changes = {**changes, "sd_model_checkpoint": chosen}
            except LookupError as error:
                raise HTTPException(422, f"sd_model_checkpoint: {error}") from None
        warnings = studio.update_settings(changes)
        if warnings:
            raise HTTPException(422, "; ".join(warnings))
