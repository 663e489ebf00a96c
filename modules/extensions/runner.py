"""Running scripts for one job: their arguments checked against their schema, their per-step
hooks adapted to the engine's ``StepHook`` and their job hooks isolated from failures.

Each job gets fresh script instances (DESIGN.md: per-job hook instances), so a script may
keep state on ``self`` during a job without leaking it into the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from modules.extensions.api import ModelPatches, Processed, Request, Script, ScriptArgError
from modules.processing.sampling.hooks import StepHook, StepParams, UNetCall, UNetResiduals

__all__ = ["ScriptCall", "ScriptHook", "resolve_script_args", "run_job_hooks"]

logger = logging.getLogger(__name__)

# The Script methods the engine calls through a StepHook (before the job, per step, per batch, per image).
_STEP_METHODS = ("patch_model", "before_step", "unet_residuals", "after_unet", "after_denoise", "after_step",
                 "before_process_batch", "process_batch", "postprocess_image", "postprocess_batch")
# The Script methods called once before the job, in this order (A1111's), each may return a new request.
_BEFORE_JOB = ("setup", "before_process", "process")


def resolve_script_args(script: Script, is_img2img: bool, given: Mapping[str, Any] | Sequence[Any] | None,
                        ) -> dict[str, Any]:
    """The script's full named arguments: defaults, overridden by ``given``.

    ``given`` is a dict by name, or A1111's positional list, which the script's ``api_args``
    turns into names (for the built-in scripts: A1111's own argument order).

    Raises:
        ScriptArgError: an unknown name, too many positional values, or a bad value; the
            message names the script and the argument.
    """
    schema = dict(script.ui(is_img2img))
    title = script.title()
    if given is None:
        given = {}
    elif not isinstance(given, Mapping):
        if not isinstance(given, list | tuple):
            raise ScriptArgError(f"{title}: expected a list or an object of arguments, got {given!r}")
        given = _named(script, list(given), is_img2img)
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ScriptArgError(f"{title}: unknown argument {unknown[0]!r}; it takes {', '.join(schema) or 'none'}")
    return {name: spec.coerce(given[name], f"{title}: {name}") if name in given else spec.default_value()
            for name, spec in schema.items()}


def _named(script: Script, positional: list[Any], is_img2img: bool) -> Mapping[str, Any]:
    """``script.api_args``, with whatever a (user) script's own version raises or returns
    wrongly reported as an argument error: a request must never fail with a server error."""
    title = script.title()
    try:
        named = script.api_args(positional, is_img2img)
    except ScriptArgError:
        raise
    except Exception as error:
        logger.exception("script %r failed to read its positional arguments", title)
        raise ScriptArgError(f"{title}: its positional arguments could not be read: {error}") from None
    if not isinstance(named, Mapping):
        raise ScriptArgError(f"{title}: api_args returned {type(named).__name__}, not {{name: value}}")
    return named


@dataclass
class ScriptCall:
    """One script instance with its arguments for one job; ``failed`` once any hook raised."""

    script: Script
    args: dict[str, Any]
    failed: bool = False

    @property
    def name(self) -> str:
        return self.script.title()


class ScriptHook(StepHook):
    """A script's per-step hooks as an engine ``StepHook``, with the job's request bound.

    The engine's dispatcher reports a failure and stops calling the hook; marking the call
    failed as well keeps the script's later job hooks (``postprocess``) from running.
    """

    def __init__(self, call: ScriptCall, request: Request, infotext: Mapping[str, Any] | None = None) -> None:
        self.call = call
        self.request = request
        self.name = call.name
        self.infotext = dict(infotext or {})

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.call.script, method)(self.request, *args, **self.call.args)
        except Exception:
            self.call.failed = True
            raise

    def patch_model(self, patches: ModelPatches) -> None:
        self._call("patch_model", patches)

    def before_step(self, step: StepParams) -> StepParams | None:
        return self._call("before_step", step)

    def unet_residuals(self, step: StepParams, call: UNetCall) -> UNetResiduals | None:
        return self._call("unet_residuals", step, call)

    def after_unet(self, step: StepParams, noise_pred: torch.Tensor) -> torch.Tensor | None:
        return self._call("after_unet", step, noise_pred)

    def after_denoise(self, step: StepParams, denoised: torch.Tensor) -> torch.Tensor | None:
        return self._call("after_denoise", step, denoised)

    def after_step(self, step: StepParams, latents: torch.Tensor) -> torch.Tensor | None:
        return self._call("after_step", step, latents)

    def uses(self, method: str) -> bool:
        # Every method is forwarded here; what counts is whether the script overrides it.
        return getattr(type(self.call.script), method, None) is not getattr(Script, method, None)

    def process_batch(self, batch_index: int, seeds: tuple[int, ...]) -> None:
        self._call("before_process_batch", batch_index, seeds)
        self._call("process_batch", batch_index, seeds)

    def postprocess_batch(self, batch_index: int, images: list[Image.Image]) -> None:
        self._call("postprocess_batch", batch_index, images)

    def postprocess_image(self, image: Image.Image, seed: int) -> Image.Image | None:
        return self._call("postprocess_image", image)


def _overrides_step_hooks(script: Script) -> bool:
    # Scripts without per-step, per-batch or per-image hooks add no calls to the engine at all.
    return any(getattr(type(script), method) is not getattr(Script, method) for method in _STEP_METHODS)


def _guarded(call: ScriptCall, method: str, errors: list[str], action: Callable[[], Any]) -> Any:
    """Run one script method; a failure is logged, recorded and disables the script for the job."""
    if call.failed:
        return None
    try:
        return action()
    except Exception as error:  # a script must never break the job
        logger.exception("script %r failed in %s; disabled for the rest of the job", call.name, method)
        errors.append(f"{call.name}: {method} failed: {error}")
        call.failed = True
        return None


def run_job_hooks(calls: Sequence[ScriptCall], request: Request,
                  run: Callable[[Request, list[StepHook]], Processed]) -> Processed:
    """Run ``setup``, ``before_process`` and ``process`` of each script (each may return a
    changed request), then the job (``run`` with the scripts' engine hooks and infotext), then
    ``postprocess``. A script that fails anywhere gets no further hooks this job; its failure
    is listed in the result's ``hook_errors`` with its name.
    """
    before: list[str] = []
    for method in _BEFORE_JOB:
        for call in calls:
            changed = _guarded(call, method, before,
                               lambda c=call, r=request, m=method: getattr(c.script, m)(r, **c.args))
            if changed is not None and not isinstance(changed, type(request)):
                before.append(f"{call.name}: {method} returned {type(changed).__name__}, expected the request")
                call.failed = True
            elif changed is not None:
                request = changed
    hooks: list[StepHook] = []
    for call in calls:
        infotext = _guarded(call, "infotext", before, lambda c=call, r=request: c.script.infotext(r, **c.args))
        if not call.failed and (infotext or _overrides_step_hooks(call.script)):
            hooks.append(ScriptHook(call, request, infotext))
    result = run(request, hooks)
    after: list[str] = []
    for call in calls:
        _guarded(call, "postprocess", after, lambda c=call: c.script.postprocess(request, result, **c.args))
    result.hook_errors = [*before, *result.hook_errors, *after]
    return result
