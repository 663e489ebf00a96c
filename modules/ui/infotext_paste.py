"""Pasting an infotext into a generation tab (A1111 ``paste_fields``): PNG Info's "Send to
txt2img", and a PNG dropped onto a tab's prompt box (``javascript/png_drop.js``).

One path turns an infotext into the tab's values: the shared controls by A1111 payload name
(``txt2img_values_from_infotext``), the scripts' controls (their ``paste_fields``), and the
settings an infotext records (Clip skip, checkpoint, VAE, ENSD ...). Those are no control of
the tab: as in A1111 they become chips of the tab's "Override settings" dropdown
("Clip skip: 2"), shown only for values that differ from the current settings, and sent with
each job of that tab as its ``override_settings``; the stored settings never change.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.processing.editing.img2img_request import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT
from modules.processing.errors import RequestValidationError
from modules.processing.output.infotext import parse_infotext
from modules.processing.output.request_infotext import (
    INFOTEXT_SETTING_KEYS,
    MODULE_KEY,
    modules_from_params,
    txt2img_values_from_infotext,
)
from modules.settings import Settings

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["IMG2IMG_KEYS", "INFOTEXT_FIELDS", "MAX_INFOTEXT_CHARS", "NOT_PASTED_KEYS", "SETTING_KEYS",
           "build_override_dropdown", "current_options", "dropped_infotext", "img2img_values", "override_chips",
           "override_update", "overrides_from_chips", "paste_txt2img", "wire_infotext_drop", "with_override_chips"]

#: Infotexts longer than this are cut (Pillow's own cap is 1 MB per PNG text chunk).
MAX_INFOTEXT_CHARS = 64 * 1024
#: Infotext keys that record a setting, and the option each overrides (one list, in processing).
SETTING_KEYS: Mapping[str, str] = INFOTEXT_SETTING_KEYS
#: Keys an infotext may record that no control or option here takes: named in a notice on paste.
NOT_PASTED_KEYS = ("Tiling", "Face restoration", "Image CFG scale", "Noise multiplier", "Token merging ratio",
                   "Token merging ratio hr", "Refiner", "Refiner switch at", "Hires checkpoint")
#: img2img's own infotext keys (``img2img_parameters``): the control each sets, and its type or choices.
IMG2IMG_KEYS: Mapping[str, tuple[str, Any]] = {
    "Denoising strength": ("denoising_strength", float), "Mask blur": ("mask_blur", int),
    "Mask mode": ("mask_mode", MASK_MODES), "Masked content": ("inpainting_fill", MASKED_CONTENT),
    "Inpaint area": ("inpaint_area", INPAINT_AREAS), "Masked area padding": ("inpaint_full_res_padding", int),
}
#: Key of img2img's received values holding the parsed infotext (scripts read theirs back).
INFOTEXT_FIELDS = "infotext_fields"
# Payload fields that describe a txt2img run, not an image: the receiving tab keeps its own.
_RUN_ONLY_FIELDS = ("batch_size", "n_iter", "styles")
#: What ``png_drop.js`` reports about a file that gave no infotext.
_DROP_PROBLEMS = {"not-png": "is not a PNG image: only a PNG's parameters are read on drop (PNG Info reads "
                             "JPEG and WebP too)",
                  "no-parameters": "has no generation parameters",
                  "unreadable": "could not be read"}
_MODULES_OPTION = "forge_additional_modules"
_MODULE_PREFIX = MODULE_KEY.format("")  # "Module "
_OPTION_TYPES = {f.name: type(f.default) for f in dataclasses.fields(Settings)}


def current_options(studio: Studio) -> dict[str, Any]:
    """What pasted settings are compared with: the settings, and the current checkpoint's title."""
    options = dataclasses.asdict(studio.settings)
    options["sd_model_checkpoint"] = studio.current_checkpoint()
    return options


def _typed(option: str, text: str) -> Any:
    """An infotext value as the option holds it (Clip skip "2" -> 2); text where it is no number."""
    kind = _OPTION_TYPES.get(option, str)
    try:
        return int(float(text)) if kind is int else float(text) if kind is float else text
    except ValueError:
        return text


def _is_current(option: str, text: str, current: Any, params: Mapping[str, str]) -> bool:
    if option == "sd_model_checkpoint":  # the current title reads "name.safetensors [hash]"; its hash
        title = str(current or "")     # may not be computed yet, then the "Model" name tells
        model = params.get("Model")
        return text in title or bool(model) and title.split(" [")[0].rsplit(".", 1)[0] == model
    return _typed(option, text) == current


def _module_chips(params: Mapping[str, str], current: Mapping[str, Any]) -> list[str]:
    """Chips of Forge's "Module 1: ae" ... keys (the part files FLUX.1 was loaded with), unless
    the ``forge_additional_modules`` option already names those files."""
    modules = modules_from_params(params)
    chosen = tuple(PurePath(name).stem for name in current.get(_MODULES_OPTION, ()))
    if not modules or chosen == tuple(PurePath(name).stem for name in modules):
        return []
    return [f"{MODULE_KEY.format(number)}: {name}" for number, name in enumerate(modules, 1)]


def override_chips(params: Mapping[str, str], current: Mapping[str, Any] | None = None) -> list[str]:
    """A1111's "Override settings" chips ("Clip skip: 2") for the settings ``params`` records,
    less those equal to ``current`` (the options, see ``current_options``)."""
    current = current or {}
    return [f"{key}: {params[key]}" for key, option in SETTING_KEYS.items() if params.get(key)
            and not (option in current and _is_current(option, params[key], current[option], params))
            ] + _module_chips(params, current)


def overrides_from_chips(chips: Sequence[str] | None) -> dict[str, Any]:
    """The ``override_settings`` of a tab's chips (unknown chips are left out)."""
    overrides: dict[str, Any] = {}
    for chip in chips or ():
        key, _, text = str(chip).partition(": ")
        if key in SETTING_KEYS:
            overrides[SETTING_KEYS[key]] = _typed(SETTING_KEYS[key], text)
        elif key.startswith(_MODULE_PREFIX) and key.removeprefix(_MODULE_PREFIX).isdigit():
            # "Module 1", "Module 2" ... in order: the chosen part files
            overrides.setdefault(_MODULES_OPTION, []).append(text)
    return overrides


def override_update(chips: Sequence[str]) -> Any:
    """The dropdown update showing ``chips`` (hidden when there are none, as in A1111)."""
    return gr.update(choices=list(chips), value=list(chips), visible=bool(chips))


def build_override_dropdown(tab: str) -> Any:
    """The tab's "Override settings" dropdown (A1111 ``{tab}_override_settings``), filled on paste."""
    return gr.Dropdown([], value=[], multiselect=True, label="Override settings", visible=False,
                       elem_id=f"{tab}_override_settings", interactive=True)


def with_override_chips(submit: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """``submit`` given the ``override_settings`` of the values' chips instead of the chips."""

    def submit_with_overrides(values: dict[str, Any]) -> str:
        values = dict(values)
        overrides = overrides_from_chips(values.pop("override_settings", None))
        return submit({**values, "override_settings": overrides} if overrides else values)

    return submit_with_overrides


def _notice_not_pasted(params: Mapping[str, str]) -> None:
    missing = [key for key in NOT_PASTED_KEYS if key in params]
    if missing:
        gr.Info(html.escape("Not set from the infotext (no control here): " + ", ".join(missing)))


def paste_txt2img(text: str, field_order: Sequence[str], current: Mapping[str, Any] | None = None,
                  script_values: Callable[[dict[str, str]], list[Any]] | None = None,
                  pasted: Callable[[str, dict[str, str]], None] | None = None) -> list[Any]:
    """The txt2img updates an infotext gives: ``field_order``'s values, then the script controls'
    (``script_values``), then the "Override settings" chips. ``pasted(text, fields)`` may rewrite
    the parsed fields first (A1111 ``on_infotext_pasted``)."""
    if not text.strip():
        raise gr.Error("This image has no generation parameters.")
    params = dict(parse_infotext(text[:MAX_INFOTEXT_CHARS]))
    if pasted is not None:
        pasted(text, params)
    try:
        values = txt2img_values_from_infotext(params)
    except RequestValidationError as error:
        raise gr.Error(html.escape(f"Cannot use these parameters: {error}")) from None
    _notice_not_pasted(params)
    scripts = script_values(params) if script_values else []
    return [values[name] for name in field_order] + scripts + [override_update(override_chips(params, current))]


def _img2img_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """The img2img controls' values the infotext's own keys give (malformed ones are left out)."""
    values: dict[str, Any] = {}
    for key, (name, kind) in IMG2IMG_KEYS.items():
        text = fields.get(key)
        if text is None:
            continue
        if isinstance(kind, tuple):
            if text in kind:
                values[name] = text
            continue
        try:
            values[name] = int(float(text)) if kind is int else float(text)
        except ValueError:
            continue
    return values


def img2img_values(infotext: str, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an infotext gives the img2img tab, by A1111 payload name: prompts, sampler, steps,
    seeds, size, denoising strength, the inpaint controls, the "Override settings" chips (the
    recorded settings that differ from ``current``) and, under ``INFOTEXT_FIELDS``, the parsed
    fields. An infotext whose values do not make a valid request (another tool's, edited by
    hand) still gives its prompts; an empty one gives only ``{INFOTEXT_FIELDS: {}}``.
    """
    fields = dict(parse_infotext(infotext[:MAX_INFOTEXT_CHARS])) if infotext.strip() else {}
    if not fields:  # an image without an infotext leaves the tab's values (and chips) as they are
        return {INFOTEXT_FIELDS: {}}
    try:
        values = txt2img_values_from_infotext(fields)
    except RequestValidationError:
        values = {"prompt": fields["Prompt"], "negative_prompt": fields["Negative prompt"]}
    for name in (*_RUN_ONLY_FIELDS, "denoising_strength"):  # txt2img's denoising is its hires pass's
        values.pop(name, None)
    values.update(_img2img_fields(fields))
    _notice_not_pasted(fields)
    return {**values, "override_settings": override_chips(fields, current), INFOTEXT_FIELDS: fields}


def dropped_infotext(payload: str) -> str | None:
    """The infotext ``png_drop.js`` read from a dropped file (its JSON report), or None after a
    warning naming the file when it gave none."""
    try:
        report = json.loads(payload or "{}")
    except ValueError:
        report = {}
    if not isinstance(report, dict):
        report = {}
    text = report.get("infotext")
    if isinstance(text, str) and text.strip():
        return text[:MAX_INFOTEXT_CHARS]
    name = str(report.get("name") or "The dropped file")
    problem = _DROP_PROBLEMS.get(str(report.get("problem")), _DROP_PROBLEMS["no-parameters"])
    gr.Warning(html.escape(f"{name} {problem}; the prompt is unchanged."))
    return None


def wire_infotext_drop(tab: str, paste: Callable[[str], Sequence[Any]], outputs: Sequence[Any]) -> None:
    """The hidden plumbing ``png_drop.js`` uses: it keeps a dropped file's report and clicks
    ``#{tab}_paste_infotext``, whose ``js`` hands the report to ``paste(infotext)`` (updates for
    ``outputs``). Call inside the tab's layout."""
    report = gr.Textbox(visible=False, elem_id=f"{tab}_paste_infotext_report")
    button = gr.Button("Paste dropped infotext", visible="hidden", elem_id=f"{tab}_paste_infotext")

    def paste_dropped(payload: str) -> list[Any]:
        text = dropped_infotext(payload)
        return list(paste(text)) if text is not None else [gr.update() for _ in outputs]

    button.click(paste_dropped, inputs=[report], outputs=list(outputs), api_visibility="private",
                 js=f"() => window.aigenTakeDroppedInfotext ? window.aigenTakeDroppedInfotext('{tab}') : ''")
