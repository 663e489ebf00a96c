"""The shipped demo checkpoint: the default of a fresh install, and it follows its prompts.

Measured on held-out captions (never seen in training) with the no-ML scorer, at Euler a,
20 steps, two seeds per prompt. ``TARGET_GATES`` are the issue's gates at CFG 7. The shipped
weights (v2) meet the background gate; colour, position and shape are still short of theirs
(measured scores in the model card). ``SHIPPED_FLOORS`` holds what v2 reaches, less a margin,
so a regression in the loader, the engine or the weights fails here; a gate replaces its floor
once a model meets it. Position and shape have no floor yet: v2 scores them near chance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modules.app import build_app_context
from modules.demo.architecture import MODEL_NAME
from modules.demo.evaluation import EvaluationReport, evaluate, evaluation_subset
from modules.models.loader import LoadedModel
from modules.models.registry import native_resolution
from modules.paths import DEMO_MODEL_DIR
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest

TARGET_GATES = {"colour": 0.90, "background": 0.85, "position": 0.75, "shape": 0.60}
# v2 measured colour 83 % and background 98 % (chance: 1/8 and 1/7); see the model card.
SHIPPED_FLOORS = {"colour": 0.75, "background": TARGET_GATES["background"]}
# v2: colour 83 % at CFG 7, 51 % at CFG 1.
CFG_COLOUR_DROP = 0.15
PROMPTS = 50
SEEDS = (1, 2)
CHECKPOINT = DEMO_MODEL_DIR / f"{MODEL_NAME}.safetensors"


@pytest.fixture(scope="module")
def report_cfg7(demo_model: LoadedModel) -> EvaluationReport:
    return evaluate(demo_model, evaluation_subset(PROMPTS), SEEDS, cfg_scale=7.0)


@pytest.fixture(scope="module")
def report_cfg1(demo_model: LoadedModel) -> EvaluationReport:
    return evaluate(demo_model, evaluation_subset(PROMPTS), SEEDS, cfg_scale=1.0)


def test_shipped_checkpoint_is_small_and_an_sd1_model() -> None:
    assert CHECKPOINT.is_file(), "the demo checkpoint must ship with the repo (tools/train_demo_model.py)"
    assert CHECKPOINT.stat().st_size < 25 * 2**20
    assert (DEMO_MODEL_DIR / "README.md").is_file()


def test_fresh_install_defaults_to_the_demo_model(tmp_path: Path) -> None:
    context = build_app_context(argparse.Namespace(data_dir=tmp_path, ckpt_dir=[]))
    default = context.registry.default()
    assert default.path == CHECKPOINT and context.registry.is_fallback(default)
    assert native_resolution(default) == 128


def test_infotext_names_the_demo_model(demo_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="a large red circle in the center on a blue background", num_inference_steps=2,
                             width=128, height=128, seed=1)
    result = run_txt2img(demo_model, Job(request))
    assert demo_model.family.id == "sd15"
    assert f"Model: {MODEL_NAME}," in result.infotexts[0]


@pytest.mark.parametrize("attribute", sorted(SHIPPED_FLOORS))
def test_held_out_prompts_are_followed(report_cfg7: EvaluationReport, attribute: str) -> None:
    assert report_cfg7.samples == PROMPTS * len(SEEDS)
    assert report_cfg7.score(attribute) >= SHIPPED_FLOORS[attribute], report_cfg7.summary()


def test_guidance_is_what_makes_it_follow_the_prompt(report_cfg7: EvaluationReport,
                                                     report_cfg1: EvaluationReport) -> None:
    # With CFG 1 the model samples from its conditional alone; CFG 7 must follow colours clearly better.
    drop = report_cfg7.score("colour") - report_cfg1.score("colour")
    assert drop >= CFG_COLOUR_DROP, f"CFG 7: {report_cfg7.summary()}; CFG 1: {report_cfg1.summary()}"
