"""A1111 routes that clients call at start-up: ``/sdapi/v1/hypernetworks``,
``/sdapi/v1/realesrgan-models``, ``POST /sdapi/v1/interrogate`` and ``GET /internal/ping``.

A client that lists these before its first generation must get A1111's shapes, never a 404 or
a 500: no hypernetworks is an empty list, and interrogation (which needs a CLIP or DeepBooru
model that is not installed) is a clear 501 once the request itself has been validated.
A1111's ``/sdapi/v1/server-stop``, ``-restart`` and ``-kill`` (``--api-server-stop``) are
deliberately absent (404): a browser-reachable route that ends the server is not offered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, HTTPException

from modules.models.upscalers import UpscalerLibrary, load_upscaler_model

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["INTERROGATORS", "REALESRGAN_ARCHITECTURES", "RealEsrganIndex", "add_a1111_routes",
           "build_internal_router"]

logger = logging.getLogger(__name__)

#: A1111's interrogator names for ``POST /interrogate``'s ``model`` ("clip" when left out).
INTERROGATORS = ("clip", "deepdanbooru")
#: spandrel's ids of the networks Real-ESRGAN's released models use: RRDBNet (spandrel calls it
#: "ESRGAN"; RealESRGAN_x4plus, x2plus, anime_6B) and SRVGGNetCompact ("Compact"; realesr-general,
#: animevideov3). Classic ESRGAN models share RRDBNet, so they are listed too.
REALESRGAN_ARCHITECTURES = ("ESRGAN", "Compact")
NOT_INSTALLED = "no CLIP/DeepBooru interrogator is installed in AIGen Studio yet"


class RealEsrganIndex:
    """Which upscaler files are Real-ESRGAN networks, and their scale.

    Telling needs the weights (spandrel reads the architecture from the state dict), so each
    file is read once and remembered by its size and modification time.
    """

    def __init__(self, library: UpscalerLibrary) -> None:
        self.library = library
        self._known: dict[tuple[Path, int, int], int | None] = {}  # (file, size, mtime_ns) -> scale
        self._lock = threading.Lock()

    def models(self) -> list[dict[str, Any]]:
        """``[{name, path, scale}]`` for the installed Real-ESRGAN models, in the library's order."""
        self.library.refresh()
        found = []
        for name in self.library.names():
            path = self.library.path(name)
            scale = self._scale(name, path) if path is not None else None
            if scale is not None:
                # The same path /upscalers gives as model_path, so the two listings agree.
                found.append({"name": name, "path": str(path), "scale": scale})
        return found

    def _scale(self, name: str, path: Path) -> int | None:
        try:
            stat = path.stat()
        except OSError:
            return None  # removed since the scan
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._known:
                self._known[key] = self._probe(name, path)
            return self._known[key]

    def _probe(self, name: str, path: Path) -> int | None:
        library = self.library
        try:
            model = load_upscaler_model(path, name, library.allow_pickle, "cpu")
        except Exception as error:  # noqa: BLE001 - a broken or refused file is not listed, never a 500
            logger.info("upscaler %s left out of /realesrgan-models: %s", name, error)
            return None
        return model.scale if model.descriptor.architecture.id in REALESRGAN_ARCHITECTURES else None


def _interrogate_request(payload: Any, decode: Callable[[Any, str], Any]) -> None:
    """Validate A1111's ``{image, model}`` body: 422 naming the field that is wrong."""
    if not isinstance(payload, dict):
        raise HTTPException(422, "body: must be a JSON object with image (base64) and model")
    model = payload.get("model", "clip")
    if model not in INTERROGATORS:
        raise HTTPException(422, f"model: unknown interrogator {model!r}; A1111's are {', '.join(INTERROGATORS)}")
    decode(payload.get("image"), "image")


def add_a1111_routes(router: APIRouter, studio: Studio, decode: Callable[[Any, str], Any]) -> None:
    """Add the ``/sdapi/v1`` routes to ``router``; ``decode`` reads a base64 image field (422)."""
    index = RealEsrganIndex(studio.context.upscalers)

    @router.get("/hypernetworks")
    def hypernetworks() -> list[dict[str, Any]]:
        return []  # A1111's shape is [{name, path}]; hypernetworks are not supported

    @router.get("/realesrgan-models")
    def realesrgan_models() -> list[dict[str, Any]]:
        return index.models()

    @router.post("/interrogate", responses={
        422: {"description": "no image, not an image, or an unknown model (the detail names the field)"},
        501: {"description": NOT_INSTALLED}})
    def interrogate(payload: Any = Body(..., description="A1111's {image: base64, model: clip|deepdanbooru}")  # noqa: B008
                    ) -> dict[str, Any]:
        _interrogate_request(payload, decode)
        raise HTTPException(501, f"{NOT_INSTALLED}: /sdapi/v1/interrogate cannot caption images")


def build_internal_router(dependencies: Sequence[Any] = ()) -> APIRouter:
    """``GET /internal/ping`` at the app's root (A1111's UI and some clients poll it), behind
    ``dependencies`` (the REST API's auth)."""
    router = APIRouter(dependencies=list(dependencies))

    @router.get("/internal/ping")
    def ping() -> dict[str, Any]:
        return {}

    return router
