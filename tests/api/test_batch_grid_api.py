"""A1111's batch grid over the REST API: none by default (A1111's API sets ``do_not_save_grid =
not save_images``), first in ``images`` with ``save_images: true``, and ``info``'s per-image
lists without it."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from modules.processing.output.image_formats import embedded_infotext

BASE = {"prompt": "a grid of kites", "steps": 2, "width": 64, "height": 64, "seed": 31, "sampler_name": "Euler",
        "batch_size": 2}


def _answer(api: httpx.Client, **fields: Any) -> tuple[list[Image.Image], dict[str, Any]]:
    response = api.post("/txt2img", json={**BASE, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in body["images"]], json.loads(body["info"])


def test_by_default_the_answer_has_the_images_only(api: httpx.Client) -> None:
    images, info = _answer(api)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert info["index_of_first_image"] == 0 and info["all_seeds"] == [31, 32]


def test_save_images_puts_the_grid_first_and_saves_it(api: httpx.Client, data_dir: Path) -> None:
    grids = data_dir / "outputs" / "txt2img-grids"
    before = set(grids.rglob("grid-*.png")) if grids.exists() else set()
    images, info = _answer(api, save_images=True)
    assert [image.size for image in images] == [(128, 64), (64, 64), (64, 64)]
    assert info["index_of_first_image"] == 1 and info["seed"] == 31
    assert info["all_seeds"] == [31, 32] and len(info["all_prompts"]) == 2  # the images', not the grid's
    assert len(info["infotexts"]) == 3 and info["infotexts"][0] == info["infotexts"][1]
    assert "Seed: 31," in embedded_infotext(images[0])
    [saved] = set(grids.rglob("grid-*.png")) - before
    with Image.open(saved) as file:
        assert file.size == (128, 64) and "Seed: 31," in file.info["parameters"]
