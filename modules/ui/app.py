"""The Blocks app: quicksettings row and the top-level tabs in A1111's order."""

from __future__ import annotations

import dataclasses
import html
import logging
from typing import Any

import gradio as gr

from modules.processing.errors import StorageFullError
from modules.settings import SETTINGS_BY_KEY
from modules.studio import Studio
from modules.ui.api_endpoints import register_api
from modules.ui.checkpoint_lists import CheckpointLists
from modules.ui.extensions_tab import build_extensions_tab
from modules.ui.extras import build_extras_tab
from modules.ui.family_follow import wire_family_defaults
from modules.ui.img2img import build_img2img_tab
from modules.ui.merger_tab import build_merger_tab
from modules.ui.models_tab import build_models_tab
from modules.ui.output_panel import wire_open_folder
from modules.ui.page_assets import theme_js
from modules.ui.png_info import build_png_info_tab
from modules.ui.script_controls import pasted_script_values
from modules.ui.send_to import wire_send_to
from modules.ui.settings_tab import (
    build_settings_tab,
    component_for,
    dynamic_choices,
    loaded_updates,
    shown_settings,
    value_from_component,
)
from modules.ui.txt2img import HIRES_FIELDS, PAYLOAD_FIELDS, build_txt2img_tab

__all__ = ["build_app"]

logger = logging.getLogger(__name__)


def _warning_banner(studio: Studio) -> str:
    lines = list(studio.settings_warnings)
    if not studio.checkpoints():
        lines.append("No checkpoint found: put a .safetensors checkpoint into models/Stable-diffusion and "
                     "press 🔄.")
    if not lines:
        return ""
    return '<div class="aigen-warning">' + "<br>".join(html.escape(line) for line in lines) + "</div>"


def _checkpoint_quicksetting(studio: Studio, lists: CheckpointLists) -> None:
    """The checkpoint dropdown: shows the checkpoint the next job uses (filled on every page
    load by ``lists``); choosing one makes it that."""
    checkpoint = gr.Dropdown(studio.checkpoint_titles(), value=studio.current_checkpoint() or None,
                             label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint", scale=4)
    refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", min_width=40, scale=0)

    def choose_checkpoint(title: str | None) -> Any:
        if title:
            try:
                studio.set_checkpoint(title)
            except LookupError as error:
                raise gr.Error(str(error)) from None
        return gr.update(value=studio.current_checkpoint() or None)

    # .input, not .change: a page load or a list refresh setting the value is not a choice.
    lists.after(checkpoint.input(choose_checkpoint, inputs=[checkpoint], outputs=[checkpoint],
                                 api_visibility="private"),
                refresh.click(lambda: studio.context.registry.refresh() and None, api_visibility="private"))
    lists.current.append(checkpoint)


def _quicksettings(studio: Studio, demo: gr.Blocks, lists: CheckpointLists) -> None:
    """The settings named in ``quicksettings_list``, at the top of every tab (A1111), filled
    from the settings on every page load; a change by the user is saved at once."""
    current = dataclasses.asdict(studio.settings)
    dynamic = dynamic_choices(studio)
    shown = shown_settings(studio, studio.settings.quicksettings_list)
    components: dict[str, Any] = {}
    with gr.Row(elem_id="quicksettings"):
        for key in studio.settings.quicksettings_list:
            if key == "sd_model_checkpoint":
                _checkpoint_quicksetting(studio, lists)
                continue
            component = components[key] = component_for(SETTINGS_BY_KEY[key], shown[key], dynamic, hint=False)

            def apply(value: Any, key: str = key) -> None:
                try:
                    warnings = studio.update_settings({key: value_from_component(value, current[key])})
                except StorageFullError as error:
                    raise gr.Error(f"Setting not saved: {error}") from None
                if warnings:
                    raise gr.Error("; ".join(warnings))

            component.input(apply, inputs=[component], api_visibility="private")
    if components:
        demo.load(lambda: loaded_updates(studio, list(components))[1], outputs=list(components.values()),
                  show_progress="hidden", api_visibility="private")


def _wire_checkpoint_lists(studio: Studio, demo: gr.Blocks, lists: CheckpointLists,
                           forms: dict[str, dict[str, Any]]) -> None:
    """Add the Extra Networks checkpoint cards of each tab's ``controls`` to ``lists`` (a card's
    click updates every list) and wire the lists; after each checkpoint change the forms follow
    the checkpoint's family."""
    for tab, controls in forms.items():
        if "checkpoints_cards" in controls:
            lists.cards[tab] = controls["checkpoints_cards"]
            lists.after(controls["checkpoint_chosen"])
    wire_family_defaults(studio, demo, forms.values(), list(lists.changes))
    lists.wire(demo)


def _extension_tabs(studio: Studio) -> None:
    """The tabs extensions add through ``on_ui_tabs``: each returns ``[(blocks, title, elem_id)]``."""
    for tabs in studio.context.scripts.run_callbacks("on_ui_tabs"):
        for entry in tabs or []:
            try:
                blocks, title, elem_id = entry
                with gr.Tab(str(title), id=str(elem_id)):
                    blocks.render()
            except Exception:  # a broken tab must not break the page
                logger.exception("an extension tab could not be added: %r", entry)


def build_app(studio: Studio, theme: str | None = None) -> gr.Blocks:
    """The whole page. Named API endpoints are declared here too (see ``api_endpoints``).
    ``theme``: ``--theme light|dark``, the page's theme while the Theme setting says "system"."""
    with gr.Blocks(title="AIGen Studio", analytics_enabled=False) as demo:
        gr.HTML(_warning_banner(studio), elem_id="aigen_banner")
        lists = CheckpointLists(studio)
        _quicksettings(studio, demo, lists)
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                txt2img = build_txt2img_tab(studio)
            with gr.Tab("img2img", id="img2img"):
                img2img = build_img2img_tab(studio)
            with gr.Tab("Extras", id="extras"):
                extras = build_extras_tab(studio)
            with gr.Tab("PNG Info", id="pnginfo"):
                build_png_info_tab(txt2img.controls, tabs, PAYLOAD_FIELDS + HIRES_FIELDS, img2img,
                                   lambda params: pasted_script_values(studio, txt2img.scripts, False, params),
                                   txt2img.scripts.fields,
                                   lambda text, params: studio.context.scripts.run_callbacks(
                                       "on_infotext_pasted", text, params))
            with gr.Tab("Models", id="models"):
                build_models_tab(studio, lists)
            with gr.Tab("Checkpoint Merger", id="modelmerger"):
                build_merger_tab(studio, lists)
            with gr.Tab("Settings", id="settings"):
                build_settings_tab(studio, demo, lists, theme_js(theme))
            with gr.Tab("Extensions", id="extensions"):
                build_extensions_tab(studio)
            _extension_tabs(studio)
        for form, folder in ((txt2img, "outdir_txt2img_samples"), (img2img.form, "outdir_img2img_samples")):
            demo.load(form.resume, inputs=[form.job_id], outputs=form.outputs, api_visibility="private",
                      concurrency_limit=None)
            wire_send_to(form.panel, tabs, img2img, extras)
            wire_open_folder(demo, form.panel, lambda folder=folder: studio.output_folder(folder))
        _wire_checkpoint_lists(studio, demo, lists, {"txt2img": txt2img.controls, "img2img": img2img.form.controls})
        register_api(studio)
    return demo
