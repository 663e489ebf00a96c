"""Prompt editing and alternation switch the conditioning at the named steps, in the loop."""

from __future__ import annotations

from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.prompts.prompt_conditioning import ScheduledConditioning, texts_per_step
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook, StepParams


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


def test_and_runs_every_sub_prompt_in_one_unet_batch(sd15_model: LoadedModel) -> None:
    batch_sizes: list[int] = []
    handle = sd15_model.pipeline.unet.register_forward_pre_hook(
        lambda module, args: batch_sizes.append(args[0].shape[0]))
    try:
        request = Txt2ImgRequest(prompt="a red circle :1.2 AND a blue square AND [snow|rain]:0.5",
                                 num_inference_steps=3, width=64, height=64, seed=1, sampler_name="Euler a",
                                 batch_size=2)
        hook = _RecordConditioning()
        run_txt2img(sd15_model, Job(request, hooks=[hook]))
    finally:
        handle.remove()
    assert batch_sizes == [8, 8, 8]  # (1 uncond + 3 sub-prompts) x 2 images, one call per step
    conds = ScheduledConditioning(sd15_model.pipeline, "a :1.2 AND b AND [c|d]:0.5", "", steps=3, batch_size=2,
                                  clip_skip=1, use_cfg=True)
    assert conds.at(0)[0].weights == (1.2, 1.0, 0.5) and conds.at(0)[0].embeds.shape[0] == 6
    assert conds.at(1)[0] is not conds.at(0)[0]  # the alternation inside the third sub-prompt switches


def test_a_zero_weight_sub_prompt_drops_out(sd15_model: LoadedModel) -> None:
    import numpy as np

    def image(prompt: str) -> np.ndarray:
        request = Txt2ImgRequest(prompt=prompt, num_inference_steps=3, width=64, height=64, seed=2,
                                 sampler_name="Euler")
        return np.asarray(run_txt2img(sd15_model, Job(request)).images[0], dtype=np.int16)

    alone, combined, mixed = image("a blue square"), image("a red circle :0 AND a blue square"), \
        image("a red circle AND a blue square")
    assert np.abs(alone - combined).max() <= 2  # equal up to float rounding of a bigger batch
    assert np.abs(alone - mixed).max() > 2


def test_sdxl_and_prompt_generates(sdxl_model: LoadedModel) -> None:
    request = Txt2ImgRequest(prompt="a red circle AND a blue square:0.7", num_inference_steps=2, width=64, height=64,
                             seed=1, sampler_name="Euler a", batch_size=2)
    result = run_txt2img(sdxl_model, Job(request))
    assert len(result.images) == 2 and result.images[0].size == (64, 64)
