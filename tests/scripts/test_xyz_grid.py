"""X/Y/Z plot: A1111's value syntax, and grids made by running every combination."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modules.processing.errors import RequestValidationError
from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from scripts.xyz_grid import MAX_CELLS, parse_axis_values
from tests.families.flux.tiny_flux_install import install_tiny_flux
from tests.studio_fixtures import BASE


@pytest.mark.parametrize(("text", "kind", "expected"), [
    ("1, 2, 5", int, [1, 2, 5]),
    ("1-5", int, [1, 2, 3, 4, 5]),
    ("1-5 (+2)", int, [1, 3, 5]),
    ("10-1 (-3)", int, [10, 7, 4, 1]),
    ("5-3", int, [5, 4, 3]),
    ("1-10 [5]", int, [1, 3, 5, 7, 10]),
    ("-3--1", int, [-3, -2, -1]),
    ("1-3, 8", int, [1, 2, 3, 8]),
    ("0.5-1.5 (+0.25)", float, [0.5, 0.75, 1.0, 1.25, 1.5]),
    ("1-2 [3]", float, [1.0, 1.5, 2.0]),
    ("7, 7.5", float, [7.0, 7.5]),
    ('Euler a, "DPM++ 2M, Karras", DDIM', str, ["Euler a", "DPM++ 2M, Karras", "DDIM"]),
    ("  a ,, b ", str, ["a", "b"]),
])
def test_values_read_like_a1111(text: str, kind: type, expected: list) -> None:
    assert parse_axis_values(text, kind) == expected


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("1, two", int, "X values: 'two' is not a whole number or a range"),
    ("1.5", int, "X values: '1.5' is not a whole number"),
    ("1-5 (+0)", int, "never gets from 1 to 5"),
    ("1-5 (-1)", int, "never gets from 1 to 5"),
    (f"1-{MAX_CELLS * 10}", int, "makes more than"),
    ("1-2 [100000]", int, "asks for 100000 values"),
])
def test_bad_values_are_named(text: str, kind: type, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_axis_values(text, kind)


def test_steps_by_cfg_grid_runs_every_cell_and_saves_the_grid(generate: Callable, data_dir: Path) -> None:
    result = generate(script_name="X/Y/Z plot", script_args={
        "x_type": "Steps", "x_values": "1-3", "y_type": "CFG Scale", "y_values": "3, 7",
        "include_lone_images": True, "margin_size": 2})
    assert result.hook_errors == []
    assert len(result.images) == 1 + 6
    cells = [parse_infotext(info) for info in result.infotexts[1:]]
    assert [(c["Steps"], c["CFG scale"]) for c in cells] == [("1", "3"), ("2", "3"), ("3", "3"),
                                                           ("1", "7"), ("2", "7"), ("3", "7")]
    assert {c["Seed"] for c in cells} == {"5"}
    grid = result.images[0]
    assert grid.width > 3 * 64 + 2 * 2 and grid.height > 2 * 64 + 2  # legends on top and left
    assert len(list((data_dir / "outputs" / "txt2img-grids").rglob("*.png"))) == 1


def test_distilled_cfg_scale_axis_sets_each_cells_value(data_dir: Path, studio: Studio, generate: Callable) -> None:
    install_tiny_flux(data_dir / "models")
    studio.refresh_checkpoints()  # as the UI's refresh button does
    on_flux = {"override_settings": {"sd_model_checkpoint": "flux1-dev"}, "cfg_scale": 1}
    result = generate(script_name="X/Y/Z plot", **on_flux, script_args={
        "x_type": "Distilled CFG Scale", "x_values": "2, 4.5", "include_lone_images": True})
    assert result.hook_errors == []
    cells = [parse_infotext(info) for info in result.infotexts[1:]]
    assert [c["Distilled CFG Scale"] for c in cells] == ["2", "4.5"]
    assert all(c["CFG scale"] == "1" and c["Model"] == "flux1-dev" for c in cells)  # real CFG stays as set
    assert result.images[1].tobytes() != result.images[2].tobytes()  # FLUX.1-dev is fed the value
    out_of_range = generate(script_name="X/Y/Z plot", **on_flux,
                            script_args={"x_type": "Distilled CFG Scale", "x_values": "3, 31"})
    assert len(out_of_range.images) == 1 and "distilled_cfg_scale" in out_of_range.hook_errors[0]


def test_prompt_search_replace_sampler_and_z_axis(generate: Callable) -> None:
    result = generate(prompt="a red cat", script_name="X/Y/Z plot", script_args={
        "x_type": "Prompt S/R", "x_values": "red, blue", "y_type": "Nothing",
        "z_type": "Sampler", "z_values": "Euler, DDIM", "include_lone_images": True, "include_sub_grids": True})
    assert result.hook_errors == []
    assert len(result.images) == 1 + 2 + 4  # main grid, one grid per Z value, the cells
    prompts = [info.splitlines()[0] for info in result.infotexts[3:]]
    assert prompts == ["a red cat", "a blue cat", "a red cat", "a blue cat"]
    assert [parse_infotext(info)["Sampler"] for info in result.infotexts[3:]] == ["Euler", "Euler", "DDIM", "DDIM"]


def test_bad_cell_stops_the_plot_before_any_image(generate: Callable) -> None:
    result = generate(script_name="X/Y/Z plot", script_args={"x_type": "Sampler", "x_values": "Euler, Nope"})
    assert len(result.images) == 1 and "sampler_name" in result.hook_errors[0]
    missing = generate(prompt="a cat", script_name="X/Y/Z plot",
                       script_args={"x_type": "Prompt S/R", "x_values": "dog, fox"})
    assert "'dog' (the first value) is not in the prompt" in missing.hook_errors[0]


@pytest.mark.parametrize(("args", "message"), [
    ({"x_type": "Seed", "x_values": "1-100000"}, "makes more than"),
    ({"x_type": "Seed", "x_values": "1-10", "y_type": "Steps", "y_values": "1-10", "z_type": "CFG Scale",
      "z_values": "1-11"}, "1100 images is more than"),
])
def test_a_plot_over_the_cap_is_refused_when_submitted(studio: Studio, args: dict, message: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        studio.submit_txt2img({**BASE, "script_name": "X/Y/Z plot", "script_args": args})
    assert caught.value.field == "script_args" and message in caught.value.message


def test_the_cap_counts_images_so_a_batch_size_multiplies_it(studio: Studio) -> None:
    args = {"x_type": "Seed", "x_values": "1-200"}
    with pytest.raises(RequestValidationError, match="200 cells of 8 images"):
        studio.submit_txt2img({**BASE, "batch_size": 8, "script_name": "X/Y/Z plot", "script_args": args})
