"""Scripts in a real job: named arguments, request changes, per-step hooks, failures isolated."""

from __future__ import annotations

import dataclasses

import pytest

from modules.extensions.api import AlwaysVisible, Checkbox, Dropdown, Number, Script, ScriptArgError, Slider
from modules.extensions.runner import ScriptCall, resolve_script_args, run_job_hooks
from modules.models.loader import LoadedModel
from modules.processing.hooks import StepHook
from modules.processing.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.txt2img import run_txt2img


class Darken(Script):
    """Multiplies the final latents, so its effect is visible in the image."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, float, str]] = []

    def title(self) -> str:
        return "Darken"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def ui(self, is_img2img: bool) -> dict:
        return {"factor": Slider("Factor", 0.0, 2.0, 1.0, step=0.1), "enabled": Checkbox("On", True),
                "mode": Dropdown("Mode", ["last", "all"]), "steps_seen": Number("Seen", 0, integer=True)}

    def after_step(self, p, step, latents, factor, enabled, mode, steps_seen):
        self.seen.append((step.step, step.call_index, factor, mode))
        if enabled and (mode == "all" or step.step == step.total_steps - 1):
            return latents * factor
        return None


class Reseed(Script):
    def title(self) -> str:
        return "Reseed"

    def process(self, p, **args):
        return dataclasses.replace(p, seed=p.seed + 1)

    def postprocess(self, p, processed, **args):
        processed.extra_parameters["Reseeded"] = "yes"


class Broken(Script):
    def title(self) -> str:
        return "Broken"

    def before_step(self, p, step, **args):
        raise RuntimeError("boom")

    def postprocess(self, p, processed, **args):
        raise AssertionError("must not run after the script failed")


def _request(**fields: object) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{"prompt": "a cat", "num_inference_steps": 3, "width": 64, "height": 64, "seed": 7,
                             "sampler_name": "Euler", **fields})


def _run(model: LoadedModel, calls: list[ScriptCall], request: Txt2ImgRequest | None = None):
    def run(req: Txt2ImgRequest, hooks: list[StepHook]):
        return run_txt2img(model, Job(req, hooks))

    return run_job_hooks(calls, request or _request(), run)


def test_arguments_by_name_or_a1111_position_with_defaults_and_checks() -> None:
    script = Darken()
    assert resolve_script_args(script, False, None) == {"factor": 1.0, "enabled": True, "mode": "last",
                                                        "steps_seen": 0}
    assert resolve_script_args(script, False, {"mode": "all"})["mode"] == "all"
    assert resolve_script_args(script, False, [0.5, False]) == {"factor": 0.5, "enabled": False, "mode": "last",
                                                                "steps_seen": 0}
    for given, message in ((({"factor": 3.0}), "Darken: factor: 3.0 is outside 0.0..2.0"),
                           ({"mode": "some"}, "Darken: mode: 'some' is not one of last, all"),
                           ({"enabled": "yes"}, "Darken: enabled: expected true or false"),
                           ({"steps_seen": 1.5}, "Darken: steps_seen: expected a whole number"),
                           ({"strength": 1}, "Darken: unknown argument 'strength'"),
                           ([1, True, "last", 0, "extra"], "Darken: expected at most 4 arguments")):
        with pytest.raises(ScriptArgError, match=message.replace(".", r"\.").replace("(", r"\(")):
            resolve_script_args(script, False, given)


def test_step_hooks_get_their_named_arguments_and_change_the_image(sd15_model: LoadedModel) -> None:
    plain = _run(sd15_model, [])
    darken = Darken()
    args = resolve_script_args(darken, False, {"factor": 0.0})
    darkened = _run(sd15_model, [ScriptCall(darken, args)])

    assert darkened.hook_errors == []
    assert [entry[:2] for entry in darken.seen] == [(0, 0), (1, 0), (2, 0)]
    assert {entry[2:] for entry in darken.seen} == {(0.0, "last")}
    assert darkened.images[0].tobytes() != plain.images[0].tobytes()


def test_process_changes_the_request_and_postprocess_sees_the_result(sd15_model: LoadedModel) -> None:
    outcome = _run(sd15_model, [ScriptCall(Reseed(), {})])
    assert outcome.seeds == [8] and outcome.request.seed == 8
    assert outcome.extra_parameters == {"Reseeded": "yes"}


def test_a_failing_script_is_disabled_and_the_others_and_the_image_go_on(sd15_model: LoadedModel) -> None:
    darken = Darken()
    outcome = _run(sd15_model, [ScriptCall(Broken(), {}), ScriptCall(darken, resolve_script_args(darken, False, {})),
                                ScriptCall(Reseed(), {})])
    assert len(outcome.images) == 1
    # Broken's postprocess (which would raise) is not called once its step hook failed.
    assert outcome.hook_errors == ["Broken: before_step failed: boom"]
    assert len(darken.seen) == 3 and outcome.extra_parameters == {"Reseeded": "yes"}


def test_failures_in_process_and_postprocess_are_listed_and_the_job_completes(sd15_model: LoadedModel) -> None:
    class BadProcess(Script):
        def title(self) -> str:
            return "BadProcess"

        def process(self, p, **args):
            return "not a request"

    class BadEnd(Script):
        def title(self) -> str:
            return "BadEnd"

        def postprocess(self, p, processed, **args):
            raise KeyError("gone")

    outcome = _run(sd15_model, [ScriptCall(BadProcess(), {}), ScriptCall(BadEnd(), {})])
    assert len(outcome.images) == 1
    assert outcome.hook_errors == ["BadProcess: process returned str, expected the request",
                                   "BadEnd: postprocess failed: 'gone'"]


def test_scripts_without_step_hooks_add_nothing_to_the_loop(sd15_model: LoadedModel) -> None:
    captured: list[list[StepHook]] = []

    def run(req: Txt2ImgRequest, hooks: list[StepHook]):
        captured.append(hooks)
        return run_txt2img(sd15_model, Job(req, hooks))

    run_job_hooks([ScriptCall(Reseed(), {}), ScriptCall(Darken(), {"factor": 1.0, "enabled": False, "mode": "last",
                                                                    "steps_seen": 0})], _request(), run)
    assert [hook.name for hook in captured[0]] == ["Darken"]
