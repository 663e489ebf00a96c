"""A1111's batch grid through the studio (every front end's path): shown first, saved as
grid-NNNN with the first image's infotext, as the settings and the API's save_images say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from modules.processing.generation.txt2img import GenerationResult
from modules.studio import Studio
from tests import studio_fixtures

BASE = studio_fixtures.BASE
data_dir, studio = studio_fixtures.data_dir, studio_fixtures.studio  # the fixtures, by name


def _run(studio: Studio, **payload: Any) -> GenerationResult:
    body = {**BASE, **payload}
    submit = studio.submit_img2img if "init_images" in body else studio.submit_txt2img
    status = studio.wait(submit(body), timeout=300)
    assert status.state == "done", status.error
    return status.result


def _grids(data_dir: Path, tab: str = "txt2img") -> list[Path]:
    return sorted((data_dir / "outputs" / f"{tab}-grids").rglob("*.png"))


def test_a_batch_shows_its_grid_first_and_saves_it(studio: Studio, data_dir: Path) -> None:
    result = _run(studio, batch_size=2)
    assert result.index_of_first_image == 1 and len(result.images) == 3
    assert result.images[0].size == (128, 64)  # 1 row of 2, as A1111 lays out two images
    assert result.seeds == [5, 5, 6] and result.infotexts[0] == result.infotexts[1]
    [grid] = _grids(data_dir)
    assert grid.name == "grid-0000.png" and grid.parent.parent.name == "txt2img-grids"
    with Image.open(grid) as saved:
        assert saved.size == (128, 64) and saved.info["parameters"] == result.infotexts[1]
    assert len(list((data_dir / "outputs" / "txt2img-images").rglob("*.png"))) == 2  # the grid is not a sample
    assert _run(studio, n_iter=2).images[0].size == (128, 64)  # batch count counts too
    assert [p.name for p in _grids(data_dir)] == ["grid-0000.png", "grid-0001.png"]


def test_one_image_has_no_grid(studio: Studio, data_dir: Path) -> None:
    result = _run(studio)
    assert len(result.images) == 1 and result.index_of_first_image == 0
    assert _grids(data_dir) == []


def test_settings_decide_showing_and_saving(studio: Studio, data_dir: Path) -> None:
    studio.update_settings({"return_grid": False})
    hidden = _run(studio, batch_size=2)
    assert len(hidden.images) == 2 and hidden.index_of_first_image == 0
    assert len(_grids(data_dir)) == 1  # "Always save all generated image grids" is still on
    studio.update_settings({"return_grid": True, "grid_save": False, "n_rows": 2})
    shown = _run(studio, batch_size=2)
    assert shown.index_of_first_image == 1 and shown.images[0].size == (64, 128)  # 2 rows, as set
    assert len(_grids(data_dir)) == 1


def test_the_api_makes_no_grid_unless_it_saves_images(studio: Studio, data_dir: Path) -> None:
    """A1111's API: ``do_not_save_grid = not save_images``."""
    plain = _run(studio, batch_size=2, save_images=False)
    assert len(plain.images) == 2 and plain.index_of_first_image == 0 and _grids(data_dir) == []
    assert len(_run(studio, batch_size=2, do_not_save_grid=True).images) == 2
    saved = _run(studio, batch_size=2, save_images=True)
    assert saved.index_of_first_image == 1 and len(_grids(data_dir)) == 1


def test_img2img_grids_go_to_their_own_folder(studio: Studio, data_dir: Path) -> None:
    result = _run(studio, batch_size=2, init_images=[Image.new("RGB", (64, 64), (10, 200, 30))],
                  denoising_strength=0.5)
    assert result.index_of_first_image == 1 and len(_grids(data_dir, "img2img")) == 1
    assert _grids(data_dir) == []
