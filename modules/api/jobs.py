"""Our job API: submit without waiting, follow a job by id (polling or server-sent events),
list, cancel, and fetch its images.

    POST   /api/v1/jobs                    {"type": "txt2img"|"img2img"|"extras", "payload": {...}}
    GET    /api/v1/jobs?offset=0&limit=50&state=done
    GET    /api/v1/jobs/{id}
    DELETE /api/v1/jobs/{id}               cancel (queued or running)
    GET    /api/v1/jobs/{id}/events        text/event-stream: queued, started, progress, then one of
                                           succeeded / failed / interrupted / cancelled
    GET    /api/v1/jobs/{id}/images/{n}    image/png with its infotext

Jobs from the UI and the blocking A1111 endpoints are the same jobs: they are listed too.
A job from before a restart is answered from the durable store.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image

from modules.processing.errors import ProcessingError, RequestValidationError, StorageFullError
from modules.processing.intake.image_input import PixelBudget, png_base64
from modules.processing.jobs.queue import JobStatus, QueueFullError
from modules.processing.output.image_formats import write_image
from modules.processing.sampling.preview import latents_to_preview
from modules.storage import is_no_space, no_space_message

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["EVENT_OF_STATE", "INSUFFICIENT_STORAGE", "build_jobs_router", "failed_job_error", "http_error",
           "storage_full_handlers"]

#: The terminal event each final state sends.
EVENT_OF_STATE = {"done": "succeeded", "failed": "failed", "interrupted": "interrupted", "cancelled": "cancelled"}
POLL_S = 0.2
RETRY_AFTER_S = 10
#: WebDAV's "507 Insufficient Storage" (RFC 4918): the server cannot store what the request needs.
INSUFFICIENT_STORAGE = 507


def http_error(error: Exception) -> HTTPException:
    """The HTTP answer to a refused submission: 422/413 naming the field, 429 when the queue is
    full, 507 when the disk is full."""
    if isinstance(error, RequestValidationError):
        return HTTPException(413 if "limit" in error.message else 422, f"{error.field}: {error.message}")
    if isinstance(error, QueueFullError):
        return HTTPException(429, str(error), headers={"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, StorageFullError):
        return HTTPException(INSUFFICIENT_STORAGE, str(error))
    return HTTPException(503, str(error))


async def _no_space_answer(request: Request, error: Exception) -> JSONResponse:
    """507 for a write that found the disk full anywhere in a route; any other error goes on
    to the server's own handler (a 500 without details)."""
    if isinstance(error, StorageFullError):
        return JSONResponse({"detail": str(error)}, status_code=INSUFFICIENT_STORAGE)
    if is_no_space(error):
        return JSONResponse({"detail": no_space_message("finish this request")}, status_code=INSUFFICIENT_STORAGE)
    raise error


def storage_full_handlers() -> dict[Any, Callable[[Request, Exception], Any]]:
    """Exception handlers (FastAPI's ``exception_handlers``) that answer a full disk with 507,
    for routes that do not catch it themselves: ``StorageFullError`` and raw "no space" errors."""
    return {OSError: _no_space_answer, sqlite3.Error: _no_space_answer}


def failed_job_error(status: JobStatus, fallback: str = "generation failed") -> HTTPException:
    """The HTTP answer to a job that failed: 422 when the request was at fault (a bad value, a
    model it named that would not load), 503 when the server's own settings name a broken
    model, 507 when a write found the disk full, and 500 with a generic message for a fault of
    the server."""
    status_code = {"invalid_request": 422, "unavailable": 503, StorageFullError.code: INSUFFICIENT_STORAGE}
    return HTTPException(status_code.get(status.error_kind or "", 500), status.public_error or fallback)


def _submit(studio: Studio, kind: Any, payload: Any, decode: Callable[[Any, str], Any]) -> str:
    if not isinstance(payload, dict):
        raise HTTPException(422, "payload: must be a JSON object")
    if kind == "txt2img":
        return studio.submit_txt2img(payload)
    if kind == "img2img":
        return studio.submit_img2img(payload)
    if kind == "extras":
        settings = {k: v for k, v in payload.items() if k not in ("image", "imageList")}
        if "imageList" in payload:
            entries = payload["imageList"] if isinstance(payload["imageList"], list) else []
            budget = PixelBudget()
            images = [(str(e.get("name") or f"image{k}"),
                       budget.take(decode(e.get("data"), f"imageList.{k}.data"), f"imageList.{k}.data"))
                      for k, e in enumerate(entries) if isinstance(e, dict)]
        else:
            images = [("image", decode(payload.get("image"), "image"))]
        return studio.submit_extras(settings, images)
    raise HTTPException(422, "type: must be one of txt2img, img2img, extras")


def _live(studio: Studio, job_id: str) -> JobStatus | None:
    try:
        return studio.status(job_id)
    except KeyError:
        return None


def describe_job(studio: Studio, job_id: str) -> dict[str, Any]:
    """The job as our API shows it; 404 for an id neither the queue nor the store knows."""
    stored = studio.jobs.get(job_id)
    status = _live(studio, job_id)
    if stored is None and status is None:
        raise HTTPException(404, f"no job {job_id!r}")
    body: dict[str, Any] = stored.summary() if stored else {"id": job_id, "kind": None}
    if status is not None:
        body.update(state=status.state, position=status.position, error=status.public_error,
                    error_code=status.error_kind,
                    warnings=list(status.warnings),
                    progress={"step": status.step, "total_steps": status.total_steps, "fraction": status.fraction,
                              "eta_s": status.eta_s, "batch": status.batch_index, "batch_count": status.batch_count})
        result = status.result
        count = len(result.images) if result is not None else 0
        body["infotexts"] = list(result.infotexts) if result is not None else []
        body["notices"] = list(result.notices) if result is not None else []
    else:
        count = len(stored.result.get("paths", [])) if stored else 0
        body.update(position=None, infotexts=stored.result.get("infotexts", []) if stored else [])
    body["images"] = [f"/api/v1/jobs/{job_id}/images/{n}" for n in range(count)]
    return body


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _events(studio: Studio, job_id: str, preview: bool) -> AsyncIterator[str]:
    """Server-sent events until the job ends; a client that goes away stops only the stream."""
    last: tuple[str, int] | None = None
    while True:
        status = _live(studio, job_id)
        if status is None or status.is_finished:
            body = describe_job(studio, job_id)
            state = body.get("state", "failed")
            yield _event(EVENT_OF_STATE.get(state, state), body)
            return
        if status.state == "queued" and last is None:
            yield _event("queued", {"id": job_id, "position": status.position})
            last = ("queued", 0)
        elif status.state == "running" and (last is None or last[0] != "running"):
            yield _event("started", {"id": job_id})
            last = ("running", -1)
        if status.state == "running" and last is not None and status.step != last[1] and status.step > 0:
            data: dict[str, Any] = {"id": job_id, "step": status.step, "total_steps": status.total_steps,
                                    "fraction": status.fraction, "eta_s": status.eta_s}
            if preview and status.preview_latents is not None:
                data["preview"] = png_base64(latents_to_preview(status.preview_latents, status.family or "sd15"), "")
            yield _event("progress", data)
            last = ("running", status.step)
        await asyncio.sleep(POLL_S)


def _image_bytes(studio: Studio, job_id: str, index: int) -> bytes:
    status = _live(studio, job_id)
    if status is not None and status.result is not None and 0 <= index < len(status.result.images):
        buffer = io.BytesIO()
        write_image(status.result.images[index], buffer, status.result.infotexts[index])
        return buffer.getvalue()
    stored = studio.jobs.get(job_id)
    paths = stored.result.get("paths", []) if stored else []
    if 0 <= index < len(paths) and Path(paths[index]).is_file():
        with Image.open(paths[index]) as image:  # a real PNG we wrote; read it back as it is
            image.verify()
        return Path(paths[index]).read_bytes()
    raise HTTPException(404, f"job {job_id!r} has no image {index}")


def build_jobs_router(studio: Studio, decode: Callable[[Any, str], Any], dependencies: list[Any]) -> APIRouter:
    """The ``/api/v1/jobs`` routes behind ``dependencies`` (the REST API's auth)."""
    router = APIRouter(prefix="/api/v1", dependencies=dependencies)

    @router.post("/jobs")
    def submit(body: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        if not isinstance(body, dict):
            raise HTTPException(422, "body: must be a JSON object")
        try:
            job_id = _submit(studio, body.get("type"), body.get("payload"), decode)
        except (RequestValidationError, ProcessingError) as error:
            raise http_error(error) from None
        status = studio.status(job_id)
        return {"id": job_id, "position": status.position, "warnings": list(status.warnings)}

    @router.get("/jobs")
    # SQLite integers are 64-bit: a larger offset would be an OverflowError (a 500), not a 422.
    def list_jobs(offset: int = Query(0, ge=0, le=2**62), limit: int = Query(50, ge=1, le=500),
                  state: str | None = None) -> dict[str, Any]:
        jobs, total = studio.jobs.page(offset, limit, state)
        return {"jobs": [job.summary() for job in jobs], "total": total, "offset": offset, "limit": limit}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return describe_job(studio, job_id)

    @router.delete("/jobs/{job_id}")
    def cancel(job_id: str) -> dict[str, Any]:
        body = describe_job(studio, job_id)  # 404 first
        try:
            stopped = studio.queue.interrupt(job_id)
        except KeyError:
            stopped = False
        if not stopped:
            raise HTTPException(409, f"job {job_id!r} has already ended ({body.get('state')})")
        return {"id": job_id, "cancelled": True}

    @router.get("/jobs/{job_id}/events")
    def events(job_id: str, preview: bool = False) -> StreamingResponse:
        describe_job(studio, job_id)  # 404 before the stream starts
        return StreamingResponse(_events(studio, job_id, preview), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @router.get("/jobs/{job_id}/images/{index}")
    def image(job_id: str, index: int) -> Response:
        return Response(_image_bytes(studio, job_id, index), media_type="image/png")

    return router
