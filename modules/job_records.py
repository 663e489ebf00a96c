"""What the durable job store keeps of a job: its submission as JSON, and its outcome.

Images in a submission (UI uploads arrive as PIL images) are stored as base64 PNG, the form
A1111's API takes, so a recovered job is submitted again exactly as an API client would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from modules.processing.intake.image_input import png_base64

__all__ = ["json_record", "result_record"]


def json_record(value: Any) -> Any:
    """``value`` with images as base64 PNG, tuples as lists and paths as strings (JSON-able)."""
    if isinstance(value, Image.Image):
        return png_base64(value, str(value.info.get("parameters", "")))
    if isinstance(value, Mapping):
        return {str(k): json_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_record(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def result_record(result: Any) -> dict[str, Any]:
    """The outcome worth keeping after a restart: saved files, infotexts, seeds and notices."""
    if result is None:
        return {}
    paths: Sequence[Path] = getattr(result, "paths", [])
    return {"paths": [str(p) for p in paths], "infotexts": list(getattr(result, "infotexts", [])),
            "seeds": list(getattr(result, "seeds", [])), "notices": list(getattr(result, "notices", [])),
            "images": len(getattr(result, "images", []))}
