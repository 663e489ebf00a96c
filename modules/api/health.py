"""``GET /health``: is the server up, on what, and how busy — answered without waiting on a job.

Nothing here takes the model lock or touches the GPU's queue: a monitoring probe must get its
answer in milliseconds while a long generation runs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from fastapi import APIRouter

from modules.processing.output.infotext import VERSION

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["build_health_router", "health_report"]


def _gpu() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return {"name": torch.cuda.get_device_name(), "memory_total": total, "memory_free": free}


def health_report(studio: Studio, started_at: float) -> dict[str, Any]:
    """Version, uptime (s), device, torch/CUDA versions, GPU, loaded model(s), queue length, and
    the problems a monitor should see: the default model's (``model_error``), an unreadable
    ``config.json``'s (``config_error``; each None when there is none) and the checkpoints that
    are blocked (``blocked_models``)."""
    models = studio.context.models
    return {
        "status": "ok",
        "version": VERSION,
        "uptime_s": round(time.monotonic() - started_at, 3),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(models.placement.device),
        "gpu": _gpu(),
        "loaded_models": list(models.loaded_names),
        "running_job": studio.queue.current_id(),
        "queue_length": len(studio.queue.pending_ids()),
        "model_error": studio.model_error,
        # An unreadable config.json: what was wrong and what the server uses instead (no folder named).
        "config_error": studio.store.config_error,
        # Files in the checkpoint folders that cannot be loaded, and why (names only, no paths).
        "blocked_models": [{"name": info.name, "reason": reason} for info in studio.context.registry.items
                           if (reason := studio.context.registry.blocked(info)) is not None],
    }


def build_health_router(studio: Studio, dependencies: Sequence[Any] = ()) -> APIRouter:
    """``/health`` at the root, behind ``dependencies`` (the REST API's auth, when it has one)."""
    router = APIRouter(dependencies=list(dependencies))
    started_at = time.monotonic()

    @router.get("/health")
    def health() -> dict[str, Any]:
        return health_report(studio, started_at)

    return router
