"""Prompt editing and alternation switch the conditioning at the named steps, in the loop."""

from __future__ import annotations

from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.hooks import StepHook, StepParams
from modules.processing.img2img import run_img2img
from modules.processing.img2img_request import Img2ImgRequest
from modules.processing.job import Job
from modules.processing.prompt_conditioning import ScheduledConditioning, texts_per_step
from modules.processing.requests import Txt2ImgRequest
from modules.processing.txt2img import run_txt2img


class _RecordConditioning(StepHook):
    """Which conditioning tensor each step's UNet call saw (by identity)."""

    name = "record"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def before_step(self, step: StepParams) -> None:
        if step.call_index == 0:
            self.seen.append((step.step, id(step.cond.embeds)))


def _switch_steps(seen: list[tuple[int, int]]) -> list[int]:
    """The 0-based steps whose conditioning differs from the step before."""
    return [step for (step, ident), (_, before) in zip(seen[1:], seen, strict=False) if ident != before]


def test_texts_per_step_follow_the_schedule() -> None:
    assert texts_per_step("a [red:blue:0.5] ball # note", 4) == ["a red ball"] * 2 + ["a blue ball"] * 2
    assert texts_per_step("[x|y]", 3) == ["x", "y", "x"]


def test_prompt_editing_switches_at_step_10_of_20(sd15_model: LoadedModel) -> None:
    hook = _RecordConditioning()
    request = Txt2ImgRequest(prompt="a [red:blue:0.5] circle", num_inference_steps=20, width=64, height=64,
                             seed=1, sampler_name="Euler a")
    run_txt2img(sd15_model, Job(request, hooks=[hook]))
    assert [step for step, _ in hook.seen] == list(range(20))
    assert _switch_steps(hook.seen) == [10]  # steps 1-10 "red", 11-20 "blue"


def test_alternation_switches_every_step_and_heun_calls_share_a_step(sd15_model: LoadedModel) -> None:
    hook = _RecordConditioning()
    request = Txt2ImgRequest(prompt="a [red|blue] circle", num_inference_steps=4, width=64, height=64, seed=1,
                             sampler_name="Heun")
    run_txt2img(sd15_model, Job(request, hooks=[hook]))
    assert _switch_steps(hook.seen) == [1, 2, 3]


def test_each_distinct_text_is_encoded_once(sd15_model: LoadedModel) -> None:
    conds = ScheduledConditioning(sd15_model.pipeline, "[red|blue] [a:b:0.5]", "ugly", steps=20, batch_size=2,
                                  clip_skip=1, use_cfg=True)
    assert conds.encodings == 5  # "red a", "blue a", "red b", "blue b" and the negative
    assert conds.at(0)[0].embeds.shape[0] == 2 and conds.at(0)[1] is conds.at(19)[1]
    no_cfg = ScheduledConditioning(sd15_model.pipeline, "x", "ugly", steps=4, batch_size=1, clip_skip=1,
                                   use_cfg=False)
    assert no_cfg.encodings == 1 and no_cfg.at(3)[1] is None


def test_img2img_schedule_spans_the_steps_that_run(sd15_model: LoadedModel) -> None:
    hook = _RecordConditioning()
    request = Img2ImgRequest(prompt="[red:blue:0.5]", init_images=(Image.new("RGB", (64, 64)),), strength=0.5,
                             num_inference_steps=20, width=64, height=64, seed=1, sampler_name="Euler a")
    run_img2img(sd15_model, Job(request, hooks=[hook]))
    assert len(hook.seen) == 10 and _switch_steps(hook.seen) == [5]
