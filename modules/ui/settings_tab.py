"""Settings tab: every setting rendered from its description, grouped by section.

Every page load fills the tab from the settings as they are then (``config.json``), and keeps
them as the page's baseline; "Apply settings" saves only the values that differ from it, so a
page left open while another one applied changes does not revert them. Values are validated
and saved atomically; bad values are reported, not applied.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.processing.errors import StorageFullError
from modules.settings import SETTING_INFOS, SETTINGS_BY_KEY, SettingInfo
from modules.studio import Studio
from modules.ui.script_controls import component_for_spec

if TYPE_CHECKING:
    from modules.ui.checkpoint_lists import CheckpointLists

__all__ = ["build_settings_tab", "changed_settings", "component_for", "dynamic_choices", "loaded_updates",
           "shown_settings", "shown_value", "value_from_component"]


def component_for(info: SettingInfo, value: Any, dynamic_choices: dict[str, list[str]], hint: bool = True) -> Any:
    """The Gradio component that edits one setting (``dynamic_choices`` fills ``choices_from``;
    ``hint`` shows A1111's grey explanation, too long for the quicksettings row)."""
    common = {"label": info.label, "elem_id": f"setting_{info.key}", "value": value,
              "info": (info.info or None) if hint else None}
    if info.kind == "checkbox":
        return gr.Checkbox(**common)
    if info.kind == "slider":
        return gr.Slider(info.minimum, info.maximum, step=info.step, **common)
    if info.kind == "number":
        return gr.Number(**common)
    if info.kind == "dropdown":
        choices = dynamic_choices.get(info.choices_from, []) if info.choices_from else list(info.choices)
        if info.multiselect:
            common["value"] = list(value)
        return gr.Dropdown(choices, multiselect=info.multiselect, allow_custom_value=bool(info.choices_from),
                           **common)
    if isinstance(value, (list, tuple)):
        common["value"] = ", ".join(str(v) for v in value)
    return gr.Textbox(**common)


def value_from_component(value: Any, current: Any) -> Any:
    """A component's value in the type of the setting's current value (sliders give floats)."""
    if isinstance(current, tuple) and isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def shown_value(studio: Studio, info: SettingInfo, value: Any) -> Any:
    """``value`` as ``info``'s component shows it: a list for a multiselect, comma text for a
    list in a textbox, and for an empty checkpoint the one the next job uses (never blank while
    one exists, the demo model's title on a fresh install)."""
    if info.key == "sd_model_checkpoint" and not value:
        return studio.current_checkpoint() or None
    if isinstance(value, (list, tuple)):
        return list(value) if info.kind == "dropdown" else ", ".join(str(v) for v in value)
    return value


def shown_settings(studio: Studio, keys: Sequence[str]) -> dict[str, Any]:
    """The components' values for ``keys`` from the studio's settings now (what config.json holds)."""
    current = dataclasses.asdict(studio.settings)
    return {key: shown_value(studio, SETTINGS_BY_KEY[key], current[key]) for key in keys}


def dynamic_choices(studio: Studio) -> dict[str, list[str]]:
    """The run-time lists that ``choices_from`` names, as they are now."""
    return {"checkpoints": studio.checkpoint_titles(), "vae": studio.vae_choices(), "modules": studio.module_choices()}


def loaded_updates(studio: Studio, keys: Sequence[str]) -> tuple[dict[str, Any], list[Any]]:
    """What a page load shows: the values by key (the page's baseline) and one update per key
    (run-time choices refreshed too)."""
    shown = shown_settings(studio, keys)
    lists = dynamic_choices(studio)
    updates = []
    for key in keys:
        info = SETTINGS_BY_KEY[key]
        extra = {"choices": lists.get(info.choices_from, [])} if info.choices_from else {}
        updates.append(gr.update(value=shown[key], **extra))
    return shown, updates


def changed_settings(values: Mapping[str, Any], baseline: Mapping[str, Any], current: Any) -> dict[str, Any]:
    """The settings the user changed on this page: the components' ``values`` that differ from
    the ``baseline`` the page loaded, in the types of the ``current`` settings. So a page loaded
    before someone else's Apply changes only what its user touched, and an empty checkpoint
    (nothing chosen) is never written."""
    stored = dataclasses.asdict(current)
    changes = {}
    for key, value in values.items():
        if key in baseline and value == baseline[key]:
            continue
        if key == "sd_model_checkpoint" and not value:
            continue
        changes[key] = value_from_component(value, stored[key])
    return changes


def build_settings_tab(studio: Studio, demo: gr.Blocks, lists: CheckpointLists | None = None,
                       theme_js: str = "") -> None:
    """Build the tab inside a ``gr.Tab``. Each page load fills it from the settings as they are
    then; Apply saves only what was changed on this page. ``lists``: the page's checkpoint lists,
    which the checkpoint dropdown joins; ``theme_js``: applies the Theme setting once saved."""
    dynamic = dynamic_choices(studio)
    components: dict[str, Any] = {}
    sections: dict[str, list[SettingInfo]] = {}
    for info in SETTING_INFOS:
        sections.setdefault(info.section, []).append(info)
    apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
    result = gr.Markdown(elem_id="settings_result")
    shown = shown_settings(studio, [info.key for info in SETTING_INFOS])
    baseline = gr.State(shown)  # this page's values as loaded (or last applied)
    for section, infos in sections.items():
        with gr.Accordion(section, open=True):
            for info in infos:
                components[info.key] = component_for(info, shown[info.key], dynamic)
    keys = list(components)
    outputs = [baseline, *components.values()]

    def load() -> list[Any]:
        shown, updates = loaded_updates(studio, keys)
        return [shown, *updates]

    def apply_settings(loaded: dict[str, Any], *values: Any) -> list[Any]:
        before = dataclasses.asdict(studio.settings)
        changes = changed_settings(dict(zip(keys, values, strict=True)), loaded, studio.settings)
        refused = []
        if "sd_model_checkpoint" in changes:  # a name from the folders (never a path), as the quicksetting
            try:
                changes["sd_model_checkpoint"] = studio.set_checkpoint(str(changes["sd_model_checkpoint"]))
            except LookupError as error:
                refused.append(f"sd_model_checkpoint: {error}; not changed")
                del changes["sd_model_checkpoint"]
        try:
            warnings = [*refused, *(studio.update_settings(changes) if changes else [])]
        except StorageFullError as error:  # nothing changed; say why in words
            return [f"Settings not saved: {error}", *load()]
        after = dataclasses.asdict(studio.settings)
        changed = [k for k in keys if after[k] != before[k]]
        text = f"{len(changed)} settings changed" + (f": {', '.join(changed)}." if changed else ".")
        if warnings:
            text += "\n\n" + "\n".join(f"- {w}" for w in warnings)
        return [text, *load()]

    loaded = demo.load(load, outputs=outputs, show_progress="hidden", api_visibility="private")
    applied = apply.click(apply_settings, inputs=[baseline, *components.values()], outputs=[result, *outputs],
                          show_progress_on=[result], api_visibility="private")
    for event in (loaded, applied) if theme_js else ():  # the page takes the saved Theme at once
        event.then(None, inputs=[components["theme"]], js=theme_js, api_visibility="private")
    if lists is not None:  # a checkpoint chosen here shows in the quicksettings row too
        lists.plain.append(components["sd_model_checkpoint"])
        lists.after(applied)
    _extension_settings(studio)


def _extension_settings(studio: Studio) -> None:
    """An "Extensions" section with the settings extensions declare, and its own Apply button."""
    specs = studio.extension_settings()
    if not specs:
        return
    values = studio.extension_setting_values()
    with gr.Accordion("Extensions", open=True, elem_id="settings_extensions"):
        controls = {key: component_for_spec(spec, f"setting_{key}", values[key]) for key, spec in specs.items()}
        apply = gr.Button("Apply extension settings", elem_id="settings_extensions_submit")
        result = gr.Markdown(elem_id="settings_extensions_result")

    def apply_values(*given: Any) -> str:
        try:
            warnings = studio.update_extension_settings(dict(zip(controls, given, strict=True)))
        except StorageFullError as error:
            return html.escape(f"Settings not saved: {error}")
        return "Saved." if not warnings else "\n".join(f"- {html.escape(w)}" for w in warnings)

    apply.click(apply_values, inputs=list(controls.values()), outputs=[result], api_visibility="private")
