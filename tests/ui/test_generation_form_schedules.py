"""The generation form's Schedule type choices follow the chosen sampler (handler level, no browser)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pytest

from modules.families.registry import FAMILIES
from modules.processing.sampling.samplers import SAMPLERS, SCHEDULE_TYPES, resolve_sampler
from modules.ui.generation_form import _sampler_and_size, scheduler_choices

SD_DEFAULTS = FAMILIES["sd15"].defaults


@pytest.fixture(scope="module")
def sampler_change() -> Any:
    """The handler wired to the txt2img sampler dropdown's change, with its inputs and outputs."""
    c: dict[str, Any] = {}
    with gr.Blocks() as demo:
        _sampler_and_size(c, "txt2img", SD_DEFAULTS)
    (handler,) = [fn for fn in demo.fns.values() if any(t == c["sampler_name"]._id for t, _ in fn.targets)]
    assert [b.elem_id for b in handler.inputs] == ["txt2img_sampling", "txt2img_scheduler"]
    assert [b.elem_id for b in handler.outputs] == ["txt2img_scheduler"]
    return handler.fn


def test_the_default_sampler_offers_every_schedule_type() -> None:
    c: dict[str, Any] = {}
    with gr.Blocks():
        _sampler_and_size(c, "txt2img", SD_DEFAULTS)
    assert [choice[0] for choice in c["scheduler"].choices] == list(SCHEDULE_TYPES)
    assert (c["sampler_name"].value, c["steps"].value) == ("DPM++ 2M", 20)  # A1111's, for SD


def test_a_flux_checkpoint_starts_the_form_at_euler() -> None:
    c: dict[str, Any] = {}
    with gr.Blocks():
        _sampler_and_size(c, "txt2img", FAMILIES["flux_schnell"].defaults)
    assert (c["sampler_name"].value, c["scheduler"].value, c["steps"].value) == ("Euler", "Automatic", 4)


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS])
def test_choosing_a_sampler_offers_only_schedules_it_runs(sampler_change: Any, sampler: str) -> None:
    update = sampler_change(sampler, "Karras")
    assert update["choices"][0] == "Automatic" and set(update["choices"]) <= set(SCHEDULE_TYPES)
    for schedule in update["choices"]:
        resolve_sampler(sampler, schedule)  # every offered pair is one the engine accepts
    assert update["value"] == ("Karras" if "Karras" in update["choices"] else "Automatic")


def test_euler_a_keeps_karras_and_timestep_samplers_drop_it(sampler_change: Any) -> None:
    euler_a = sampler_change("Euler a", "Karras")
    assert euler_a["value"] == "Karras" and euler_a["choices"] == list(SCHEDULE_TYPES)
    ddim = sampler_change("DDIM", "Karras")
    assert ddim["value"] == "Automatic" and "Karras" not in ddim["choices"] and "DDIM" in ddim["choices"]
    assert scheduler_choices("LCM", "Uniform")["choices"] == ["Automatic"]
    assert scheduler_choices("DPM2", "Align Your Steps")["value"] == "Automatic"
