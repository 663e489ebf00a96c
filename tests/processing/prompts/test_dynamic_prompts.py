"""Wildcards and variants: seeded per image, recorded as Template, image by image in the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.output.infotext import parse_infotext
from modules.processing.prompts.dynamic_prompts import expand_prompts, has_dynamic_syntax, run_with_dynamic_prompts
from modules.processing.requests import Txt2ImgRequest


@pytest.fixture
def wildcards(tmp_path: Path) -> Path:
    (tmp_path / "colour.txt").write_text("red\nblue\ngreen\n# a comment line\n", encoding="utf-8")
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "round.txt").write_text("circle\nring\n__colour__ disc\n", encoding="utf-8")
    return tmp_path


def test_syntax_detection_leaves_a1111_syntax_alone() -> None:
    assert has_dynamic_syntax("a __colour__ cat") and has_dynamic_syntax("a {red|blue} cat")
    assert has_dynamic_syntax("{2$$a|b|c}")
    assert not has_dynamic_syntax("a (red:1.2) [a:b:0.5] [x|y] cat {literal}")


def test_each_seed_draws_its_own_prompt_reproducibly(wildcards: Path) -> None:
    template = "a __colour__ {big|small} __shapes/round__"
    prompts, notices = expand_prompts(template, [1, 2, 3, 4, 5, 6], wildcards)
    assert not notices and len(set(prompts)) > 1
    assert all(p.split()[1] in ("red", "blue", "green") for p in prompts)
    assert expand_prompts(template, [4], wildcards)[0] == [prompts[3]]  # seed 4 alone: the same prompt
    two, _ = expand_prompts("{2$$a|b|c}", [7], wildcards)
    assert len(two[0].split(",")) == 2


def test_unknown_wildcard_stays_and_is_reported(wildcards: Path) -> None:
    prompts, notices = expand_prompts("a __nope__ cat", [1], wildcards)
    assert prompts == ["a __nope__ cat"] and "__nope__" in notices[0]


def test_a_wildcard_job_runs_image_by_image_with_templates(sd15_model: LoadedModel, wildcards: Path) -> None:
    updates: list[ProgressUpdate] = []
    request = Txt2ImgRequest(prompt="a __colour__ circle", negative_prompt="{ugly|blurry}", num_inference_steps=2,
                             width=64, height=64, seed=10, batch_size=2, batch_count=2, sampler_name="Euler a")
    result = run_with_dynamic_prompts(run_txt2img, sd15_model, Job(request, on_progress=updates.append), None,
                                      wildcards)
    assert result.seeds == [10, 11, 12, 13] and len(result.images) == 4
    params = [parse_infotext(text) for text in result.infotexts]
    assert all(p["Template"] == "a __colour__ circle" and p["Negative Template"] == "{ugly|blurry}" for p in params)
    assert all(p["Prompt"].split()[1] in ("red", "blue", "green") for p in params)
    assert [(u.batch_index, u.batch_count) for u in updates if u.step == 2] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    # Image 3 alone (seed 13) is the same picture with the same drawn prompt.
    again = run_with_dynamic_prompts(run_txt2img, sd15_model, Job(Txt2ImgRequest(
        prompt="a __colour__ circle", negative_prompt="{ugly|blurry}", num_inference_steps=2, width=64, height=64,
        seed=13, sampler_name="Euler a")), None, wildcards)
    assert again.infotexts[0] == result.infotexts[3]
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[3]))


def test_prompts_without_dynamic_syntax_run_as_one_job(sd15_model: LoadedModel, wildcards: Path) -> None:
    request = Txt2ImgRequest(prompt="a red circle", num_inference_steps=2, width=64, height=64, seed=1)
    result = run_with_dynamic_prompts(run_txt2img, sd15_model, Job(request), None, wildcards)
    assert "Template" not in result.infotexts[0]
