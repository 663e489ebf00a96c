"""Prompts from file or textbox: A1111's per-line options, checked before anything runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modules.processing.errors import RequestValidationError
from modules.processing.output.infotext import parse_infotext
from modules.processing.prompts.styles import PromptStyle
from modules.studio import Studio
from scripts.prompts_from_file import MAX_LINES, parse_prompt_lines
from tests.studio_fixtures import BASE


def test_lines_read_like_a1111() -> None:
    text = '''a plain prompt

--prompt "a cat, sitting" --negative_prompt blurry --steps 30 --cfg_scale 7.5 --sampler_name "Euler a"
--prompt dog --styles "Style A" "Style B" --tiling --seed 4 --width 512 --restore_faces false
'''
    assert parse_prompt_lines(text) == [
        {"prompt": "a plain prompt"},
        {"prompt": "a cat, sitting", "negative_prompt": "blurry", "steps": 30, "cfg_scale": 7.5,
         "sampler_name": "Euler a"},
        {"prompt": "dog", "styles": ["Style A", "Style B"], "tiling": True, "seed": 4, "width": 512,
         "restore_faces": False},
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("ok\n--steps many", "line 2: --steps: 'many' is not a whole number"),
    ("--prompt cat --colour red", "line 1: unknown option '--colour'"),
    ("\n\n--prompt 'unclosed", "line 3: No closing quotation"),
    ("--cfg_scale", "line 1: --cfg_scale takes one value, got 0"),
    ("--tiling maybe", "line 1: --tiling: 'maybe' is not true or false"),
])
def test_bad_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_prompt_lines(text)


def test_too_many_lines_are_refused() -> None:
    with pytest.raises(ValueError, match=f"more than {MAX_LINES}"):
        parse_prompt_lines("cat\n" * (MAX_LINES + 1))


def test_each_line_is_a_generation_with_its_options(generate: Callable, studio: Studio) -> None:
    studio.styles.save(PromptStyle("Mine", "{prompt}, oil painting", "blurry"))
    lines = "a red circle\n--prompt 'a blue square' --steps 3 --seed 11 --styles Mine --outpath_samples x\n"
    result = generate(prompt="", script_name="Prompts from file or textbox",
                      script_args={"prompt_txt": lines, "checkbox_iterate": True})
    assert result.hook_errors == [] and len(result.images) == 2
    first, second = (parse_infotext(info) for info in result.infotexts)
    assert result.infotexts[0].startswith("a red circle\n")
    assert result.infotexts[1].startswith("a blue square, oil painting\nNegative prompt: blurry")
    assert (first["Seed"], first["Steps"]) == ("5", "2") and (second["Seed"], second["Steps"]) == ("11", "3")
    assert result.notices == ["Prompts from file: not applied here: --outpath_samples"]


def test_an_unknown_style_stops_the_script_naming_it(generate: Callable) -> None:
    result = generate(script_name="Prompts from file or textbox", script_args={"prompt_txt": "--styles Nope"})
    assert "prompt 1 of the list" in result.hook_errors[0] and "Nope" in result.hook_errors[0]


def test_a_bad_value_stops_the_script_before_any_image(generate: Callable) -> None:
    result = generate(script_name="Prompts from file or textbox",
                      script_args={"prompt_txt": "--prompt ok\n--prompt bad --steps 0"})
    assert len(result.images) == 1  # the plain generation, made instead
    assert "prompt 2 of the list: steps" in result.hook_errors[0]


@pytest.mark.parametrize(("text", "message"), [
    ("\n".join(f"p{k}" for k in range(MAX_LINES + 1)), f"more than {MAX_LINES} prompts"),
    ("--prompt a --n_iter 100 --batch_size 8\n--prompt b --n_iter 100 --batch_size 8", "make 1600 images"),
])
def test_a_list_over_the_image_cap_is_refused_when_submitted(studio: Studio, text: str, message: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        studio.submit_txt2img({**BASE, "script_name": "Prompts from file or textbox",
                               "script_args": {"prompt_txt": text}})
    assert caught.value.field == "script_args" and message in caught.value.message
