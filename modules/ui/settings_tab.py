"""Settings tab: every setting rendered from its description, grouped by section.

"Apply settings" validates and saves atomically; bad values are reported, not applied.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import gradio as gr

from modules.settings import SETTING_INFOS, SettingInfo
from modules.studio import Studio
from modules.ui.script_controls import component_for_spec

__all__ = ["build_settings_tab", "component_for", "value_from_component"]


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


def build_settings_tab(studio: Studio) -> None:
    """Build the tab inside a ``gr.Tab``."""
    current = dataclasses.asdict(studio.settings)
    dynamic = {"checkpoints": studio.checkpoint_titles(), "vae": studio.vae_choices()}
    components: dict[str, Any] = {}
    sections: dict[str, list[SettingInfo]] = {}
    for info in SETTING_INFOS:
        sections.setdefault(info.section, []).append(info)
    apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
    result = gr.Markdown(elem_id="settings_result")
    for section, infos in sections.items():
        with gr.Accordion(section, open=True):
            for info in infos:
                components[info.key] = component_for(info, current[info.key], dynamic)
    keys = list(components)

    def apply_settings(*values: Any) -> str:
        before = dataclasses.asdict(studio.settings)
        changes = {key: value_from_component(value, before[key]) for key, value in zip(keys, values, strict=True)}
        warnings = studio.update_settings(changes)
        changed = [k for k in keys if dataclasses.asdict(studio.settings)[k] != before[k]]
        text = f"{len(changed)} settings changed" + (f": {', '.join(changed)}." if changed else ".")
        if warnings:
            text += "\n\n" + "\n".join(f"- {w}" for w in warnings)
        return text

    apply.click(apply_settings, inputs=[components[k] for k in keys], outputs=[result], api_visibility="private")
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
        warnings = studio.update_extension_settings(dict(zip(controls, given, strict=True)))
        return "Saved." if not warnings else "\n".join(f"- {html.escape(w)}" for w in warnings)

    apply.click(apply_values, inputs=list(controls.values()), outputs=[result], api_visibility="private")
