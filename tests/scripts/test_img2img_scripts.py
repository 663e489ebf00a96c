"""Loopback and SD upscale: img2img scripts, run as a user runs them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from scripts.loopback import loop_strength
from scripts.sd_upscale import blend_tiles, tile_starts


def _source(size: tuple[int, int] = (64, 64)) -> Image.Image:
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray(gradient.astype(np.uint8))


@pytest.mark.parametrize(("curve", "expected"), [
    ("Linear", [0.8, 0.6, 0.4, 0.2]),
    ("Aggressive", [0.8, 0.5, 0.28038, 0.2]),  # 0.8 - 0.6 * sin(k/3 * pi/2)
    ("Lazy", [0.8, 0.71962, 0.5, 0.2]),        # 0.8 - 0.6 * (1 - cos(k/3 * pi/2))
])
def test_loopback_strength_curves_follow_a1111(curve: str, expected: list[float]) -> None:
    assert [round(loop_strength(k, 4, 0.8, 0.2, curve), 5) for k in range(4)] == expected
    assert loop_strength(0, 1, 0.8, 0.2, curve) == 0.8


def test_loopback_feeds_each_output_back_with_the_next_seed(generate: Callable) -> None:
    result = generate(init_images=[_source()], denoising_strength=0.6, script_name="Loopback",
                      script_args={"loops": 3, "final_denoising_strength": 0.3})
    assert result.hook_errors == [] and len(result.images) == 1 + 3
    infos = [parse_infotext(info) for info in result.infotexts[1:]]
    assert [info["Seed"] for info in infos] == ["5", "6", "7"]
    assert [info["Denoising strength"] for info in infos] == ["0.6", "0.45", "0.3"]
    grid = result.images[0]
    assert grid.width == 3 * 64 and grid.height > 64  # the grid: one column per loop, labels above


def test_loopback_is_offered_on_img2img_only(studio: Studio) -> None:
    from modules.processing.errors import RequestValidationError

    with pytest.raises(RequestValidationError, match="no script 'Loopback'"):
        studio.submit_txt2img({"prompt": "x", "script_name": "Loopback"})


def test_tiles_cover_the_image_with_the_overlap() -> None:
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(112, 64, 16) == [0, 48]            # two tiles overlapping by exactly 16
    assert tile_starts(128, 64, 16) == [0, 32, 64]        # two would not overlap: a third goes between
    assert tile_starts(160, 64, 32) == [0, 32, 64, 96]
    for length, tile, overlap in ((200, 64, 16), (513, 128, 64), (1000, 512, 0)):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile  # covers the image, last tile inside it
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_blending_identical_tiles_gives_back_the_image_without_seams() -> None:
    big = _source((160, 96))
    xs, ys = tile_starts(160, 64, 32), tile_starts(96, 64, 32)
    tiles = [big.crop((x, y, x + 64, y + 64)) for y in ys for x in xs]
    rebuilt = np.asarray(blend_tiles(tiles, xs, ys, big.size, 32), dtype=int)
    assert np.abs(rebuilt - np.asarray(big, dtype=int)).max() <= 1


def test_sd_upscale_doubles_the_image_and_saves_only_the_result(generate: Callable, data_dir: Path) -> None:
    result = generate(init_images=[_source()], denoising_strength=0.3, script_name="SD upscale",
                      script_args={"overlap": 16, "scale_factor": 2.0})
    assert result.hook_errors == []
    assert [image.size for image in result.images] == [(128, 128)]
    saved = list((data_dir / "outputs" / "img2img-images").rglob("*.png"))
    assert len(saved) == 1 and Image.open(saved[0]).size == (128, 128)


def test_a_batch_from_a_folder_runs_the_selected_script_on_every_file(studio: Studio, tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    _source().save(inputs / "a.png")
    _source().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inputs / "b.png")
    payload = {"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 5, "denoising_strength": 0.5,
               "script_name": "Loopback", "script_args": {"loops": 2, "final_denoising_strength": 0.3}}

    status = studio.wait(studio.submit_img2img_batch(payload, str(inputs), str(out)), timeout=120)

    assert status.state == "done", status.error
    result = status.result
    assert result.hook_errors == [] and len(result.images) == 2 * (1 + 2)  # per file: its grid and two loops
    assert [img.width for img in result.images[::3]] == [2 * 64, 2 * 64]
    assert len(list(out.glob("*.png"))) == 4  # the loops' images; grids go to the img2img grid folder
