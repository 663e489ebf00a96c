"""A1111-compatible REST routes (``/sdapi/v1/...``) on the same server as the UI.

Existing A1111 clients post the same JSON and read the same response shapes. Validation
errors are HTTP 422 naming the field; the server never dies from a request. Generation goes
through the same job queue as the browser, so API and UI jobs run one at a time in order.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image

from modules.api.a1111_response import IMG2IMG_REQUEST_DEFAULTS, TXT2IMG_REQUEST_DEFAULTS, generation_response
from modules.api.a1111_routes import add_a1111_routes
from modules.api.body_values import check_body_values
from modules.api.extras_routes import add_extras_routes
from modules.api.jobs import failed_job_error, http_error
from modules.api.listings import add_listing_routes
from modules.api.login_limit import mark_password_ok
from modules.api.networks import add_network_routes
from modules.api.options_routes import add_options_routes
from modules.extensions.job_scripts import describe_scripts
from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.intake.image_input import decode_base64_image, png_base64
from modules.processing.output.image_formats import embedded_infotext
from modules.processing.output.infotext import parse_infotext
from modules.processing.sampling.preview import latents_to_preview
from modules.processing.sampling.samplers import SAMPLERS, SCHEDULE_TYPES
from modules.processing.sampling.schedules import DEFAULT_RHO

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["build_router", "decode_image"]


def _auth_dependency(credentials: Sequence[tuple[str, str]]) -> Any:
    """HTTP Basic auth against ``credentials`` (constant-time compare); none = open. A right
    password is marked for ``LoginLimit`` (which counts the wrong ones by their 401)."""
    if not credentials:
        return lambda: None
    basic = HTTPBasic()

    def check(request: Request, given: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008 - FastAPI idiom
        ok = any(secrets.compare_digest(given.username.encode(), user.encode())
                 & secrets.compare_digest(given.password.encode(), password.encode())
                 for user, password in credentials)
        if not ok:
            raise HTTPException(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})
        mark_password_ok(request.state)

    return check


def decode_image(data: Any, field: str = "image") -> Image.Image:
    """``decode_base64_image`` with its validation error as HTTP 422 (413 when too large)."""
    try:
        return decode_base64_image(data, field)
    except RequestValidationError as error:
        raise HTTPException(413 if "limit" in error.message else 422, str(error)) from None


def _generate(payload: Any, submit: Callable[[dict[str, Any]], str], studio: Studio,
              defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Queue a txt2img/img2img payload with ``submit``, wait, and answer in A1111's shape.

    An interrupted job answers 200 with the images it got to (A1111 returns the partly
    denoised ones); ``info.interrupted`` says so.
    """
    if not isinstance(payload, dict):
        raise HTTPException(422, "body: must be a JSON object")
    # A1111's API defaults: images are not saved unless asked (``save_images``), and are sent back.
    payload = {"save_images": False, **payload}
    try:
        job_id = submit(payload)
    except (RequestValidationError, ProcessingError) as error:
        raise http_error(error) from None  # 422/413 naming the field, 429 when the queue is full
    status = studio.wait(job_id)
    if status.state == "failed":  # 422 for the request's mistake (a model it named), 507 disk full, 500 ours
        raise failed_job_error(status)
    if status.result is None:  # cancelled while waiting in the queue: nothing was made
        raise HTTPException(409, f"job {job_id} was cancelled before it started")
    started = dt.datetime.now() - dt.timedelta(seconds=status.elapsed_s)
    return generation_response(payload, status.result, job_id, defaults=defaults, warnings=status.warnings,
                               image_format=studio.image_format(payload.get("override_settings")), started=started)


def _idle_state() -> dict[str, Any]:
    """A1111's ``state`` when nothing runs (``webuiapi.util_wait_for_ready`` waits for ``job_count`` 0)."""
    return {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
            "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}


def _progress(studio: Studio, skip_current_image: bool = False) -> dict[str, Any]:
    job_id = studio.queue.current_id()
    status = studio.status(job_id) if job_id is not None else None
    if status is None or status.is_finished:
        return {"progress": 0.0, "eta_relative": 0.0, "state": _idle_state(), "current_image": None,
                "textinfo": None}
    current_image = None
    if not skip_current_image and status.preview_latents is not None:
        # The cheap latent preview (no VAE decode), as the UI's live preview shows it.
        preview = latents_to_preview(status.preview_latents, status.family or "sd15")
        current_image = png_base64(preview.resize((preview.width * 8, preview.height * 8),
                                                  Image.Resampling.NEAREST), "")
    started = dt.datetime.now() - dt.timedelta(seconds=status.elapsed_s)
    state = {**_idle_state(), "job": job_id, "job_count": status.batch_count, "job_no": status.batch_index,
             "job_timestamp": started.strftime("%Y%m%d%H%M%S"), "sampling_step": status.step,
             "sampling_steps": status.total_steps}
    return {"progress": status.fraction, "eta_relative": status.eta_s or 0.0, "state": state,
            "current_image": current_image, "textinfo": f"Step {status.step}/{status.total_steps}"}


def build_router(studio: Studio, credentials: Sequence[tuple[str, str]] = (),
                 flags: Mapping[str, Any] | None = None) -> APIRouter:
    """The ``/sdapi/v1`` routes, all behind the given HTTP Basic credentials (if any);
    ``flags`` (the parsed command line) answer ``/cmd-flags``, secrets hidden."""
    # The other API routers take these dependencies too: the password, then the body's values.
    router = APIRouter(prefix="/sdapi/v1", dependencies=[Depends(_auth_dependency(credentials)),
                                                         Depends(check_body_values)])

    @router.post("/txt2img")
    def txt2img(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return _generate(payload, studio.submit_txt2img, studio, TXT2IMG_REQUEST_DEFAULTS)

    @router.post("/img2img")
    def img2img(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return _generate(payload, studio.submit_img2img, studio, IMG2IMG_REQUEST_DEFAULTS)

    @router.post("/png-info")
    def png_info(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        image = decode_image(payload.get("image"))
        text = embedded_infotext(image)
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
    add_options_routes(router, studio)
    add_network_routes(router, studio)
    add_extras_routes(router, studio, decode_image)
    add_listing_routes(router, studio, flags or {})
    add_a1111_routes(router, studio, decode_image)
    return router


def _model_routes(router: APIRouter, studio: Studio) -> None:
    @router.get("/samplers")
    def samplers() -> list[dict[str, Any]]:
        return [{"name": s.name, "aliases": list(s.aliases), "options": {"scheduler": s.default_schedule.lower()}}
                for s in SAMPLERS]

    @router.get("/schedulers")
    def schedulers() -> list[dict[str, Any]]:
        return [{"name": t.lower().replace(" ", "_"), "label": t, "aliases": None,
                 "default_rho": DEFAULT_RHO.get(t, -1)} for t in SCHEDULE_TYPES]

    @router.get("/sd-models")
    def sd_models(include_blocked: bool = False) -> list[dict[str, Any]]:
        """A1111's list: the loadable checkpoints (clients pick from it); ``include_blocked``
        adds the files that cannot be loaded, each with its ``blocked`` reason."""
        registry = studio.context.registry
        listed = registry.items if include_blocked else studio.checkpoints()
        # A diffusers folder's name has no extension to drop ("FLUX.1-dev" is not "FLUX").
        return [{"title": registry.title(info), "model_name": info.path.name if info.is_diffusers_folder
                 else info.path.stem, "filename": str(info.path),
                 "hash": registry.hashes.cached_short_hash(info.path), "sha256": None, "config": None,
                 **({"blocked": registry.blocked(info)} if include_blocked else {})}
                for info in listed]

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
