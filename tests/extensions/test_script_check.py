"""``Script.check``: a script refuses a request when it is submitted, knowing the checkpoint the
job will use; the refusal is a RequestValidationError naming the script and the argument."""

from __future__ import annotations

import pytest

from modules.extensions.api import AlwaysVisible, JobModel, Script, ScriptCheckError, Slider
from modules.extensions.job_scripts import JobScripts, check_job_scripts
from modules.extensions.runner import ScriptCall
from modules.families.registry import FAMILIES
from modules.processing.errors import RequestValidationError
from modules.processing.requests import Txt2ImgRequest

REQUEST = Txt2ImgRequest(prompt="a cat", width=64, height=64)


class XlOnly(Script):
    """Refuses a strength above 1 unless the checkpoint is SDXL."""

    def __init__(self) -> None:
        self.seen: list[JobModel | None] = []

    def title(self) -> str:
        return "XL only"

    def show(self, is_img2img: bool) -> object:
        return AlwaysVisible

    def ui(self, is_img2img: bool) -> dict:
        return {"strength": Slider("Strength", 0.0, 2.0, 1.0, step=0.1)}

    def check(self, p, model, strength):
        self.seen.append(model)
        if strength > 1 and model is not None and model.family.base != "sdxl":
            raise ScriptCheckError(f"strength above 1 needs SDXL, {model.checkpoint} is {model.family.label}",
                                   argument="args.strength")


class Refuses(Script):
    def check(self, p, model, **args):
        raise ScriptCheckError("never")


class Buggy(Script):
    def check(self, p, model, **args):
        raise RuntimeError("a bug in the script, not a refusal")


def test_a_check_refuses_naming_the_argument_and_sees_the_checkpoint() -> None:
    script = XlOnly()
    scripts = JobScripts(always_on=[ScriptCall(script, {"strength": 1.5})])
    with pytest.raises(RequestValidationError) as caught:
        check_job_scripts(scripts, REQUEST, JobModel("tiny-sd15", FAMILIES["sd15"]))
    assert caught.value.field == "alwayson_scripts.XL only.args.strength"
    assert caught.value.message == "strength above 1 needs SDXL, tiny-sd15 is SD1.x"
    check_job_scripts(scripts, REQUEST, JobModel("tiny-sdxl", FAMILIES["sdxl"]))
    check_job_scripts(scripts, REQUEST, None)  # not known before it loads: the script lets it through
    assert [model.checkpoint if model else None for model in script.seen] == ["tiny-sd15", "tiny-sdxl", None]


def test_a_check_that_fails_otherwise_does_not_stop_the_job_and_the_selected_script_is_checked() -> None:
    check_job_scripts(JobScripts(always_on=[ScriptCall(Buggy(), {})]), REQUEST, None)
    selected = JobScripts(selected=ScriptCall(XlOnly(), {"strength": 2.0}))
    with pytest.raises(RequestValidationError) as caught:
        check_job_scripts(selected, REQUEST, JobModel("tiny-sd15", FAMILIES["sd15"]))
    assert caught.value.field == "script_args.strength"  # script_args is the selected script's args
    with pytest.raises(RequestValidationError) as caught:
        check_job_scripts(JobScripts(always_on=[ScriptCall(Refuses(), {})]), REQUEST, None)
    assert caught.value.field == "alwayson_scripts.Refuses"  # no argument named: the script's field
