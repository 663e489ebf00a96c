"""Grids: A1111's row rule, the drawing every grid shares, and the batch grid a job shows first."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from modules.processing.generation.txt2img import GenerationResult
from modules.processing.output.grids import GridOptions, add_batch_grid, grid_rows, image_grid
from modules.processing.requests import Txt2ImgRequest


@pytest.mark.parametrize(("count", "rows"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2), (7, 3), (9, 3), (12, 3)])
def test_auto_rows_are_rounded_square_root(count: int, rows: int) -> None:
    assert grid_rows(count) == rows


@pytest.mark.parametrize(("count", "rows"), [(5, 1), (6, 2), (7, 1), (8, 2), (12, 3)])
def test_prevent_empty_spots_takes_a_divisor(count: int, rows: int) -> None:
    assert grid_rows(count, prevent_empty_spots=True) == rows
    assert count % rows == 0


def test_row_count_setting_and_batch_size_rule() -> None:
    assert grid_rows(8, n_rows=3) == 3
    assert grid_rows(8, batch_size=4, n_rows=0) == 4  # 0: as many rows as the batch size
    assert grid_rows(2, n_rows=5) == 2  # never more rows than images
    with pytest.raises(ValueError):
        grid_rows(0)


def _cell(colour: tuple[int, int, int], size: tuple[int, int] = (8, 4)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_grid_keeps_every_pixel_in_row_order() -> None:
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    grid = image_grid([_cell(red), _cell(green), _cell(blue)], cols=2)
    assert grid.size == (16, 8)
    assert grid.getpixel((0, 0)) == red and grid.getpixel((8, 0)) == green and grid.getpixel((0, 4)) == blue
    assert grid.getpixel((8, 4)) == (255, 255, 255)  # the empty spot is the background


def _result(count: int, batch_size: int = 1) -> GenerationResult:
    result = GenerationResult(request=Txt2ImgRequest(prompt="p", width=64, height=64, batch_size=batch_size,
                                                     batch_count=count // batch_size))
    for k in range(count):
        result.add_image(_cell((40 * k, 0, 0)), 10 + k, 20 + k, f"p\nSeed: {10 + k}", None)
    return result


def test_batch_grid_comes_first_and_is_saved_with_the_first_infotext(tmp_path: Path) -> None:
    result = _result(3)
    options = GridOptions(folder=tmp_path / "txt2img-grids", date_subfolder=False)
    saved = add_batch_grid(result, options)
    assert saved == tmp_path / "txt2img-grids" / "grid-0000.png"
    assert result.index_of_first_image == 1 and len(result.images) == 4
    assert result.images[0].size == (16, 8)  # 3 images: 2 rows of 2
    assert result.seeds[:2] == [10, 10] and result.infotexts[0] == result.infotexts[1] == "p\nSeed: 10"
    with Image.open(saved) as file:
        assert file.size == (16, 8) and file.info["parameters"] == "p\nSeed: 10"
    assert add_batch_grid(_result(2), options).name == "grid-0001.png"


def test_no_grid_of_one_image_or_when_neither_shown_nor_saved(tmp_path: Path) -> None:
    single = _result(1)
    assert add_batch_grid(single, GridOptions(folder=tmp_path)) is None
    assert len(single.images) == 1 and single.index_of_first_image == 0
    assert not list(tmp_path.rglob("*.png"))
    lone = _result(1)
    add_batch_grid(lone, GridOptions(save=False, only_if_multiple=False))
    assert lone.index_of_first_image == 1 and len(lone.images) == 2
    off = _result(2)
    assert add_batch_grid(off, GridOptions(show=False, save=False, folder=tmp_path)) is None
    assert len(off.images) == 2 and not list(tmp_path.rglob("*.png"))


def test_saved_but_not_shown_and_never_twice(tmp_path: Path) -> None:
    result = _result(4, batch_size=2)
    saved = add_batch_grid(result, GridOptions(show=False, folder=tmp_path, date_subfolder=False))
    assert saved is not None and len(result.images) == 4 and result.index_of_first_image == 0
    shown = _result(2)
    shown.prepend_grid(_cell((1, 2, 3)))  # a script's grid is there already
    assert add_batch_grid(shown, GridOptions(folder=tmp_path)) is None and len(shown.images) == 3
