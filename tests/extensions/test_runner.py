"""Scripts in a real job: named arguments, request changes, per-step hooks, failures isolated."""

from __future__ import annotations

import dataclasses

import pytest

from modules.extensions.api import AlwaysVisible, Checkbox, Dropdown, Number, Script, ScriptArgError, Slider
from modules.extensions.runner import ScriptCall, resolve_script_args, run_job_hooks
from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook


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
                           ([1, True, "last", 0, "extra"], "Darken: expected at most 4 arguments"),
                           (5, "Darken: expected a list or an object of arguments"),
                           ("1, 2", "Darken: expected a list or an object of arguments")):
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


class Recorder(Script):
    """Records every hook call; turns each finished image grey."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def title(self) -> str:
        return "Recorder"

    def setup(self, p, **args):
        self.calls.append(("setup",))

    def before_process(self, p, **args):
        self.calls.append(("before_process",))

    def process(self, p, **args):
        self.calls.append(("process",))

    def before_process_batch(self, p, batch_index, seeds, **args):
        self.calls.append(("before_batch", batch_index))

    def process_batch(self, p, batch_index, seeds, **args):
        self.calls.append(("batch", batch_index, seeds))

    def postprocess_batch(self, p, batch_index, images, **args):
        self.calls.append(("after_batch", batch_index, len(images)))

    def before_step(self, p, step, **args):
        self.calls.append(("before", step.step, step.call_index))

    def after_unet(self, p, step, noise_pred, **args):
        self.calls.append(("unet", step.step, step.call_index))

    def after_step(self, p, step, latents, **args):
        self.calls.append(("after", step.step, step.call_index))

    def postprocess_image(self, p, image, **args):
        self.calls.append(("image",))
        return image.convert("L").convert("RGB")


@pytest.mark.parametrize(("sampler", "second_order"), [
    ("Euler", False), ("Euler a", False), ("DPM++ 2M", False), ("DDIM", False), ("PLMS", False),
    ("Heun", True), ("DPM2", True), ("DPM++ SDE", True),
])
def test_hooks_run_in_order_every_step_for_each_sampler_class(sd15_model: LoadedModel, sampler: str,
                                                              second_order: bool) -> None:
    recorder = Recorder()
    result = _run(sd15_model, [ScriptCall(recorder, {})], _request(sampler_name=sampler, num_inference_steps=4))
    calls = [c for c in recorder.calls if c[0] in ("before", "unet", "after")]
    # Each UNet call: before, unet, after, in that order, with the same step and call index.
    triples = [calls[k:k + 3] for k in range(0, len(calls), 3)]
    assert all([t[0] for t in triple] == ["before", "unet", "after"] and len({t[1:] for t in triple}) == 1
               for triple in triples)
    steps = [triple[0][1] for triple in triples]
    assert sorted(set(steps)) == [0, 1, 2, 3] and steps == sorted(steps)
    assert any(triple[0][2] == 1 for triple in triples) == (second_order or sampler == "PLMS")
    assert recorder.calls[:5] == [("setup",), ("before_process",), ("process",), ("before_batch", 0),
                                  ("batch", 0, (7,))]
    assert recorder.calls[-2:] == [("image",), ("after_batch", 0, 1)]
    assert result.images[0].getpixel((10, 10))[0] == result.images[0].getpixel((10, 10))[1]  # grey


def test_per_batch_and_per_image_hooks_see_every_batch_and_change_what_is_saved(sd15_model: LoadedModel,
                                                                                tmp_path) -> None:
    from PIL import Image

    from modules.processing.generation.txt2img import OutputOptions

    recorder = Recorder()
    request = _request(batch_size=2, batch_count=2)
    outcome = run_job_hooks([ScriptCall(recorder, {})], request,
                            lambda r, hooks: run_txt2img(sd15_model, Job(r, hooks), OutputOptions(tmp_path / "out")))
    assert [c for c in recorder.calls if c[0] == "batch"] == [("batch", 0, (7, 8)), ("batch", 1, (9, 10))]
    assert len([c for c in recorder.calls if c[0] == "image"]) == 4
    assert [c for c in recorder.calls if c[0] == "after_batch"] == [("after_batch", 0, 2), ("after_batch", 1, 2)]
    for image, path in zip(outcome.images, outcome.paths, strict=True):
        saved = Image.open(path).convert("RGB")
        assert saved.tobytes() == image.tobytes()
        r, g, b = saved.getpixel((5, 5))
        assert r == g == b
