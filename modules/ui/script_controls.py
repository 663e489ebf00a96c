"""User scripts in a generation tab: the "Script" dropdown's choices with their controls, and
one accordion per always-on script, all built from the scripts' own argument descriptions.

Controls are keyed ``script::<title>::<argument>`` among the tab's values; ``script_payload``
turns them into the request fields A1111 clients send (``script_name``, ``script_args``,
``alwayson_scripts``), so the browser and the API go through the same validation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.extensions.api import ArgSpec
from modules.extensions.job_scripts import script_args_from_infotext, tab_scripts
from modules.processing.editing.image_ops import flatten
from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import open_image_file
from modules.ui.image_format import IMAGE_FORMAT

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["ScriptControls", "build_script_controls", "component_for_spec", "pasted_script_values",
           "script_payload", "uploaded_image", "wire_script_choice", "with_scripts"]

_PREFIX = "script::"


def _slug(title: str) -> str:
    """A title as an HTML id part: "X/Y/Z plot" -> "x_y_z_plot"."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _key(title: str, name: str) -> str:
    return f"{_PREFIX}{title}::{name}"


def component_for_spec(spec: ArgSpec, elem_id: str, value: Any = None) -> Any:
    """The Gradio control for one (non-group) argument description, showing ``value`` (default: the spec's)."""
    if spec.kind == "image":
        # A file path, not pixels: gradio would decode an upload of any size before the handler
        # could check it; ``uploaded_image`` reads the size from the header first.
        return gr.Image(label=spec.label, type="filepath", image_mode=None, sources=["upload", "clipboard"],
                        elem_id=elem_id, height=256, format=IMAGE_FORMAT)
    common = {"label": spec.label, "value": spec.default if value is None else value, "elem_id": elem_id}
    if spec.kind == "checkbox":
        return gr.Checkbox(**common)
    if spec.kind == "dropdown":
        return gr.Dropdown(list(spec.choices), info=spec.info or None, **common)
    if spec.kind == "text":
        return gr.Textbox(**common)
    if spec.kind == "slider":
        return gr.Slider(spec.minimum, spec.maximum, step=spec.step, **common)
    return gr.Number(minimum=spec.minimum, maximum=spec.maximum, precision=0 if spec.integer else None, **common)


@dataclass
class ScriptControls:
    """What ``build_script_controls`` added: the value keys, selectable titles and their groups."""

    fields: tuple[str, ...] = ()
    selectable: list[str] = field(default_factory=list)
    always_on: list[str] = field(default_factory=list)
    groups: dict[str, Any] = field(default_factory=dict)
    #: The keys of image controls: their values arrive as uploaded files' paths.
    image_fields: tuple[str, ...] = ()


def uploaded_image(value: Any, where: str) -> Any:
    """An image control's value for the request: an uploaded file's path opened (size checked from
    its header, then decoded, transparency laid on white as before), anything else (a picture
    sent from another tab, nothing) as it is.

    Raises:
        gr.Error: the file is not an image, is damaged, or is over the pixel limit (named ``where``).
    """
    if not isinstance(value, str) or not value:
        return value or None
    try:
        return flatten(open_image_file(value, where))
    except RequestValidationError as error:
        raise gr.Error(f"{error.field}: {error.message}") from None


def _controls_for(c: dict[str, Any], tab: str, title: str, schema: Mapping[str, ArgSpec]) -> list[str]:
    """One control per argument; a group's fields go in a tab of their own (``<argument>.<field>`` keys)."""
    keys = []
    slug = _slug(title)
    plain = {name: spec for name, spec in schema.items() if spec.kind != "group"}
    groups = {name: spec for name, spec in schema.items() if spec.kind == "group"}
    for name, spec in plain.items():
        keys.append(_key(title, name))
        c[keys[-1]] = component_for_spec(spec, f"script_{tab}_{slug}_{name}")
    if groups:
        with gr.Tabs():
            for name, spec in groups.items():
                with gr.Tab(spec.label, elem_id=f"script_{tab}_{slug}_{name}"):
                    keys += _group_controls(c, f"script_{tab}_{slug}_{name}", _key(title, name), spec)
    return keys


def _group_controls(c: dict[str, Any], elem_id: str, key: str, spec: ArgSpec) -> list[str]:
    """A group's fields, and its Preview button with the image it shows when the group has one."""
    keys = []
    for name, field_spec in spec.fields:
        keys.append(f"{key}.{name}")
        c[keys[-1]] = component_for_spec(field_spec, f"{elem_id}_{name}")
    if spec.preview is not None:
        preview, names = spec.preview, [name for name, _ in spec.fields]
        button = gr.Button("Preview", elem_id=f"{elem_id}_preview_button", size="sm")
        shown = gr.Image(label="Preprocessor preview", interactive=False, elem_id=f"{elem_id}_preview", height=256,
                         format=IMAGE_FORMAT)

        images = {name for name, field_spec in spec.fields if field_spec.kind == "image"}

        def run_preview(*values: Any) -> Any:
            given = {name: uploaded_image(value, f"{spec.label}: {name}") if name in images else value
                     for name, value in zip(names, values, strict=True)}
            try:
                return preview(given)
            except ValueError as error:  # bad settings are shown to the user, not raised as a crash
                raise gr.Error(str(error)) from None

        button.click(run_preview, inputs=[c[k] for k in keys], outputs=[shown], api_visibility="private")
    return keys


def build_script_controls(studio: Studio, c: dict[str, Any], tab: str, builtin_choices: Sequence[str] = (),
                          ) -> ScriptControls:
    """Add the Script dropdown (``c["script_name"]``: "None", ``builtin_choices``, then the user
    scripts), each selectable script's controls (shown when chosen) and the always-on
    accordions. Call inside the tab's settings column."""
    is_img2img = tab == "img2img"
    selectable, always_on = tab_scripts(studio.context.scripts, is_img2img, studio.extension_setting_values())
    controls = ScriptControls(selectable=[s.title() for s in selectable], always_on=[s.title() for s in always_on])
    keys: list[str] = []
    for script in always_on:
        with gr.Accordion(script.title(), open=False, elem_id=f"script_{tab}_{_slug(script.title())}"):
            keys += _controls_for(c, tab, script.title(), script.ui(is_img2img))
    c["script_name"] = gr.Dropdown(["None", *builtin_choices, *controls.selectable], value="None", label="Script",
                                   elem_id=f"{tab}_script")
    for script in selectable:
        with gr.Group(visible=False, elem_id=f"script_{tab}_{_slug(script.title())}_controls") as group:
            keys += _controls_for(c, tab, script.title(), script.ui(is_img2img))
        controls.groups[script.title()] = group
    controls.fields = tuple(keys)
    controls.image_fields = tuple(key for key in keys if isinstance(c[key], gr.Image))
    return controls


def wire_script_choice(c: dict[str, Any], controls: ScriptControls) -> None:
    """Show the chosen script's controls, hide the others."""
    if not controls.groups:
        return
    titles = list(controls.groups)

    def chosen(name: str) -> list[Any]:
        return [gr.update(visible=name == title) for title in titles]

    c["script_name"].change(chosen, inputs=[c["script_name"]], outputs=[controls.groups[t] for t in titles],
                            api_visibility="private", queue=False)


def script_payload(values: Mapping[str, Any], controls: ScriptControls) -> dict[str, Any]:
    """``values`` without the script controls, plus the A1111 script fields they mean; uploaded
    images (``controls.image_fields``) are opened here (gr.Error if one is refused)."""
    values = {key: uploaded_image(value, key.removeprefix(_PREFIX).replace("::", ": "))
              if key in controls.image_fields else value for key, value in values.items()}
    payload = {k: v for k, v in values.items() if not k.startswith(_PREFIX)}
    if payload.get("script_name") in (None, "None"):
        payload.pop("script_name", None)

    def args_of(title: str) -> dict[str, Any]:
        head = _key(title, "")
        args: dict[str, Any] = {}
        for key, value in values.items():
            if not key.startswith(head):
                continue
            name, _, group_field = key[len(head):].partition(".")
            if group_field:
                args.setdefault(name, {})[group_field] = value
            else:
                args[name] = value
        return args

    if controls.always_on:
        payload["alwayson_scripts"] = {title: {"args": args_of(title)} for title in controls.always_on}
    if values.get("script_name") in controls.selectable:
        payload["script_args"] = args_of(values["script_name"])
    return payload


Submit = Callable[[dict[str, Any]], str]


def with_scripts(submit: Submit, controls: ScriptControls, studio: Studio, is_img2img: bool) -> Submit:
    """``submit`` taking the tab's values with script controls in them. Always-on scripts that
    were switched off since the page was built are left out (their accordions stay until a restart)."""

    def submit_values(values: dict[str, Any]) -> str:
        _, always_on = tab_scripts(studio.context.scripts, is_img2img, studio.extension_setting_values())
        present = {script.title() for script in always_on}
        current = dataclasses.replace(controls, always_on=[t for t in controls.always_on if t in present])
        return submit(script_payload(values, current))

    return submit_values


def pasted_script_values(studio: Studio, controls: ScriptControls, is_img2img: bool,
                         params: Mapping[str, str]) -> list[Any]:
    """Updates for ``controls.fields`` from a pasted infotext's fields: the value a script's
    ``paste_fields`` reads back where there is one, no change elsewhere."""
    pasted = script_args_from_infotext(studio.context.scripts, is_img2img, params, studio.extension_setting_values())
    values: dict[str, Any] = {}
    for title, args in pasted.items():
        for name, value in args.items():
            if isinstance(value, dict):  # a group: one control per field; its images are not in infotexts
                values.update({f"{_key(title, name)}.{k}": v for k, v in value.items() if k != "image"})
            else:
                values[_key(title, name)] = value
    return [gr.update(value=values[key]) if key in values else gr.update() for key in controls.fields]
