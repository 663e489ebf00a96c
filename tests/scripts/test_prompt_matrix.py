"""Prompt matrix: every combination of the optional parts, and a labelled grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from modules.processing.errors import RequestValidationError
from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from scripts.prompt_matrix import MAX_VARIABLE_PARTS
from tests.studio_fixtures import BASE


def test_three_optional_parts_make_eight_images_and_a_grid(generate: Callable, data_dir: Path) -> None:
    result = generate(prompt="a castle|at night|in snow|red", script_name="Prompt matrix",
                      script_args={"margin_size": 4})
    assert result.hook_errors == []
    assert len(result.images) == 1 + 8
    prompts = [info.splitlines()[0] for info in result.infotexts[1:]]
    assert prompts == ["a castle", "a castle, at night", "a castle, in snow", "a castle, at night, in snow",
                       "a castle, red", "a castle, at night, red", "a castle, in snow, red",
                       "a castle, at night, in snow, red"]
    assert {parse_infotext(info)["Seed"] for info in result.infotexts} == {"5"}  # one seed for all
    grid = result.images[0]
    # 4 columns x 2 rows of 64 px with 4 px margins, plus the legend bands.
    assert grid.width > 4 * 64 + 3 * 4 and grid.height > 2 * 64 + 4
    [saved] = (data_dir / "outputs" / "txt2img-grids").rglob("*.png")
    assert Image.open(saved).size == grid.size


def test_positional_a1111_args_space_joining_start_and_different_seeds(generate: Callable) -> None:
    # A1111 order: put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size
    result = generate(prompt="dog|brown", script_name="prompt matrix",
                      script_args=[True, True, "positive", "space", 0])
    assert [info.splitlines()[0] for info in result.infotexts[1:]] == ["dog", "brown dog"]
    assert result.seeds[1:] == [5, 6]


def test_a_prompt_without_parts_is_reported_and_the_image_still_made(generate: Callable) -> None:
    result = generate(prompt="just a cat", script_name="Prompt matrix")
    assert len(result.images) == 1
    assert result.hook_errors[0].startswith("Prompt matrix: run failed: Prompt matrix: write the optional parts")


def test_a_matrix_over_the_part_limit_is_refused_when_submitted(studio: Studio) -> None:
    prompt = "a cat" + "|x" * (MAX_VARIABLE_PARTS + 1)
    with pytest.raises(RequestValidationError) as caught:
        studio.submit_txt2img({**BASE, "prompt": prompt, "script_name": "Prompt matrix"})
    assert caught.value.field == "script_args" and f"at most {MAX_VARIABLE_PARTS}" in caught.value.message
