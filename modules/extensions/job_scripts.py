"""Which scripts a job runs, and running them around the generation.

Every job gets fresh instances of the scripts shown on its tab: the always-on ones (each
with its defaults unless the request gives arguments) and, if the request names one, a
selectable script that replaces the plain generation with its ``run``. Requests name
scripts as A1111 clients do: ``script_name`` + ``script_args`` (positional list or object)
and ``alwayson_scripts: {"Title": {"args": [...] or {...}}}``; titles match case-blind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from PIL import Image

from modules.extensions.api import (
    AlwaysVisible,
    ArgSpec,
    JobHandle,
    JobModel,
    Processed,
    Request,
    Script,
    ScriptArgError,
)
from modules.extensions.loader import ScriptCatalog
from modules.extensions.runner import ScriptCall, resolve_script_args, run_job_hooks
from modules.processing.errors import JobInterrupted, RequestValidationError
from modules.processing.sampling.hooks import StepHook

__all__ = ["JobScripts", "build_job_scripts", "check_job_scripts", "describe_scripts", "extension_settings",
           "run_with_scripts", "script_args_from_infotext", "tab_scripts"]

logger = logging.getLogger(__name__)

#: (request, the always-on scripts' step hooks, save to the output folder) -> result
Generate = Callable[[Request, list[StepHook], bool], Processed]
#: (image, request, infotext, is a grid) -> where it was saved, or None
ImageSaver = Callable[[Image.Image, Request, str, bool], Path | None]


@dataclass
class JobScripts:
    """A job's scripts: the selected one (or None) and every always-on one, in hook order."""

    selected: ScriptCall | None = None
    always_on: list[ScriptCall] = field(default_factory=list)


def tab_scripts(catalog: ScriptCatalog, is_img2img: bool, options: Mapping[str, Any] | None = None,
                ) -> tuple[list[Script], list[Script]]:
    """New instances of the (selectable, always-on) scripts the txt2img or img2img tab shows;
    each reads the extension settings ``options`` (``Script.option``) and the catalog's
    shared ``resources``.

    A script whose constructor or ``show`` raises is logged and left out.
    """
    selectable: list[Script] = []
    always_on: list[Script] = []
    for source in catalog.scripts:
        try:
            script = source.script_class()
            script._options = MappingProxyType(dict(options or {}))
            script._resources = catalog.resources
            shown = script.show(is_img2img)
        except Exception:  # a user script must not stop the job
            logger.exception("script %s from %s left out", source.script_class.__name__, source.path)
            continue
        if shown is AlwaysVisible:
            always_on.append(script)
        elif shown:
            selectable.append(script)
    return selectable, always_on


def _args_of(entry: Any, field_name: str) -> Mapping[str, Any] | Sequence[Any]:
    """An ``alwayson_scripts`` entry: ``{"args": ...}`` as A1111 sends it, or the args themselves."""
    args = entry.get("args", []) if isinstance(entry, Mapping) and set(entry) <= {"args"} else entry
    if not isinstance(args, Mapping | list | tuple):
        raise RequestValidationError(field_name, f"must be a list or an object of arguments, got {args!r}")
    return args


def _call(script: Script, is_img2img: bool, given: Any, field_name: str) -> ScriptCall:
    try:
        return ScriptCall(script, resolve_script_args(script, is_img2img, given))
    except ScriptArgError as error:
        raise RequestValidationError(field_name, str(error)) from None


def build_job_scripts(catalog: ScriptCatalog, is_img2img: bool, script_name: str | None = None,
                      script_args: Any = None, alwayson_scripts: Mapping[str, Any] | None = None,
                      options: Mapping[str, Any] | None = None) -> JobScripts:
    """Resolve a request's script fields against the scripts of its tab; every script instance
    reads the extension settings ``options`` through ``Script.option``.

    Raises:
        RequestValidationError: an unknown title or a bad argument, naming the field
            (``script_name``, ``script_args``, ``alwayson_scripts.<Title>``).
    """
    selectable, always_on = tab_scripts(catalog, is_img2img, options)
    given = {str(title).lower(): (str(title), entry) for title, entry in (alwayson_scripts or {}).items()}
    titles = {script.title().lower() for script in always_on}
    unknown = sorted(title for key, (title, _) in given.items() if key not in titles)
    if unknown:
        raise RequestValidationError(f"alwayson_scripts.{unknown[0]}", "is not an always-on script here; "
                                     f"available: {', '.join(s.title() for s in always_on) or 'none'}")
    calls = []
    for script in always_on:
        title, entry = given.get(script.title().lower(), (script.title(), {}))
        calls.append(_call(script, is_img2img, _args_of(entry, f"alwayson_scripts.{title}"),
                           f"alwayson_scripts.{title}"))
    selected = None
    if script_name:
        chosen = next((s for s in selectable if s.title().lower() == script_name.lower()), None)
        if chosen is None:
            raise RequestValidationError("script_name", f"no script {script_name!r} here; available: "
                                         f"{', '.join(s.title() for s in selectable) or 'none'}")
        selected = _call(chosen, is_img2img, script_args or {}, "script_args")
    return JobScripts(selected, calls)


def check_job_scripts(scripts: JobScripts, request: Request, model: JobModel | None) -> None:
    """Each script's submit-time ``check`` of the built request against the checkpoint ``model``
    the job will use (None: not known yet). A check that fails for any other reason than
    refusing is logged and ignored: it must not stop the job.

    Raises:
        RequestValidationError: a script refused, naming ``alwayson_scripts.<Title>`` and the
            argument its ``ScriptCheckError`` names (``...args[0].model``); for the selected
            script, ``script_args`` stands for its ``args`` (``script_args[0]``).
    """
    named = [(call, False) for call in scripts.always_on]
    if scripts.selected is not None:
        named.append((scripts.selected, True))
    for call, selected in named:
        try:
            call.script.check(request, model, **call.args)
        except ScriptArgError as error:
            argument = str(getattr(error, "argument", "") or "")
            if selected:  # script_args is the selected script's args
                rest = argument.removeprefix("args")
                field_name = "script_args" + (rest if rest[:1] in ("", "[", ".") else f".{rest}")
            else:
                field_name = f"alwayson_scripts.{call.name}" + (f".{argument}" if argument else "")
            raise RequestValidationError(field_name, str(error)) from None
        except Exception:  # a user script's own bug: the job runs, the script may still fail there
            logger.exception("script %r failed in check; ignored", call.name)


def run_with_scripts(scripts: JobScripts | None, request: Request, generate: Generate,
                     save_image: ImageSaver | None = None,
                     apply_styles: Callable[[Request, Sequence[str]], Request] | None = None) -> Processed:
    """The job with its scripts: the selected script's ``run`` (its ``process_images`` runs the
    always-on scripts around each generation), else one generation with the always-on scripts.

    A selected script that fails, or returns nothing, is reported and the plain generation runs.
    ``save_image`` saves what a script makes itself (grids, assembled images); None: nothing is saved.
    """
    if scripts is None:
        return generate(request, [], True)

    def process_images(p: Request, save: bool = True) -> Processed:
        return run_job_hooks(scripts.always_on, p, lambda r, hooks: generate(r, hooks, save))

    selected = scripts.selected
    if selected is None:
        return process_images(request)
    selected.script._job = JobHandle(process_images, save_image or (lambda image, p, infotext, is_grid: None),
                                     apply_styles or (lambda p, names: p))
    try:
        result = selected.script.run(request, **selected.args)
        problem = None if isinstance(result, Processed) else f"run returned {type(result).__name__}, not a result"
    except JobInterrupted:
        raise
    except Exception as error:  # a script must never break the job
        logger.exception("script %r failed in run", selected.name)
        result, problem = None, f"run failed: {error}"
    if problem is None:
        return result  # type: ignore[return-value]
    fallback = process_images(request)
    fallback.hook_errors.insert(0, f"{selected.name}: {problem}; the image was made without the script")
    return fallback


def describe_scripts(catalog: ScriptCatalog, options: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A1111's ``/sdapi/v1/script-info``: one entry per script and tab, with its arguments in
    order (each with its ``name``, which our API also accepts in place of the position)."""
    entries = []
    for is_img2img in (False, True):
        selectable, always_on = tab_scripts(catalog, is_img2img, options)
        for script, alwayson in [*((s, False) for s in selectable), *((s, True) for s in always_on)]:
            args = []
            for name, spec in script.ui(is_img2img).items():
                info = spec.describe()
                args.append({"name": name, "label": info["label"], "value": info["default"],
                             "minimum": info.get("minimum"), "maximum": info.get("maximum"),
                             "step": info.get("step"), "choices": info.get("choices"), "kind": info["kind"],
                             **({"fields": info["fields"]} if "fields" in info else {})})
            entries.append({"name": script.title().lower(), "title": script.title(), "is_alwayson": alwayson,
                            "is_img2img": is_img2img, "args": args})
    return entries


def _from_text(spec: ArgSpec, text: str) -> Any:
    """An infotext value (always text) as the argument's type; ValueError if it is not one."""
    if spec.kind == "group":
        if spec.parse_text is None:
            raise ValueError(text)
        return spec.parse_text(text)
    if spec.kind == "checkbox":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if spec.kind in ("slider", "number"):
        number = float(text)
        return int(number) if spec.integer and number.is_integer() else number
    return text


def script_args_from_infotext(catalog: ScriptCatalog, is_img2img: bool, params: Mapping[str, str],
                              options: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """What pasting an infotext sets back: ``{script title: {argument: value}}`` from the keys
    each script declares in ``paste_fields``. Values that do not fit their argument are left out."""
    found: dict[str, dict[str, Any]] = {}
    selectable, always_on = tab_scripts(catalog, is_img2img, options)
    for script in [*selectable, *always_on]:
        schema = script.ui(is_img2img)
        for key, name in script.paste_fields().items():
            if key not in params or name not in schema:
                continue
            # A group's parse_text already gives its canonical form; its normalize also checks what a
            # request must have (ControlNet: an image), which a pasted value gets from the user later.
            spec = replace(schema[name], normalize=None) if schema[name].kind == "group" else schema[name]
            try:
                value = spec.coerce(_from_text(spec, params[key]), f"{script.title()}: {name}")
            except ValueError:
                continue
            found.setdefault(script.title(), {})[name] = value
    return found


def extension_settings(catalog: ScriptCatalog) -> dict[str, ArgSpec]:
    """The settings extensions declare through ``on_ui_settings``, by key (the first declaration
    of a key wins; anything that is not a ``{str: ArgSpec}`` mapping is logged and left out)."""
    found: dict[str, ArgSpec] = {}
    for declared in catalog.run_callbacks("on_ui_settings"):
        if not isinstance(declared, Mapping):
            logger.warning("on_ui_settings returned %r, not {key: ArgSpec}; ignored", type(declared).__name__)
            continue
        for key, spec in declared.items():
            if isinstance(key, str) and isinstance(spec, ArgSpec):
                found.setdefault(key, spec)
            else:
                logger.warning("extension setting %r is not declared with an ArgSpec; ignored", key)
    return found
