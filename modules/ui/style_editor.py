"""Prompt styles in a tab: the Styles dropdown, 📋 apply, 💾 save, and the ✏️ editor (A1111 1.6+).

The editor is a panel under the prompts: a style name (pick one or type a new one), its prompt
and negative prompt (``{prompt}`` marks where the user's prompt goes), and Save / Delete /
Close. Every change goes through ``StyleStore`` (styles.csv, written atomically) and refreshes
the tab's Styles dropdown. The handlers are plain functions of the store and the values, so
tests call them without a browser; bad input becomes a warning and a status line, never an
exception in the page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules.processing.errors import RequestValidationError
from modules.processing.prompts.styles import PromptStyle, StyleStore

__all__ = ["StyleEditor", "apply_selected_styles", "build_style_editor", "close_editor", "delete_edited_style",
           "open_editor", "save_edited_style", "save_prompts_as_style", "select_style", "wire_style_buttons"]

STYLE_HINT = ("Text added to the prompt when the style is applied. Put {prompt} where your prompt goes; "
              "without it, the style's text is added after your prompt.")


@dataclass
class StyleEditor:
    """The editor panel's components."""

    panel: Any
    name: Any
    prompt: Any
    negative_prompt: Any
    status: Any
    buttons: dict[str, Any]


def _status(text: str, is_error: bool = False) -> str:
    """A status line; style names are user text, so they are escaped (the warning toast renders HTML)."""
    escaped = html.escape(text)
    if is_error:
        gr.Warning(escaped)
    return f'<span class="aigen-style-status">{escaped}</span>'


def _choices(store: StyleStore) -> list[str]:
    return list(store.load())


def open_editor(store: StyleStore, selected: list[str] | None) -> tuple[Any, ...]:
    """Show the panel, pre-filled with the first style selected in the tab (or blank for a new one).

    Returns updates for (panel, name, prompt, negative prompt, status).
    """
    styles = store.load()
    name = next((n for n in selected or [] if n in styles), None)
    style = styles.get(name) if name else None
    return (gr.update(visible=True), gr.update(choices=list(styles), value=name),
            style.prompt if style else "", style.negative_prompt if style else "", "")


def select_style(store: StyleStore, name: str | None) -> tuple[Any, Any]:
    """An existing style's texts when its name is picked; a new name keeps what is typed."""
    style = store.load().get((name or "").strip())
    if style is None:
        return gr.update(), gr.update()
    return style.prompt, style.negative_prompt


def save_edited_style(store: StyleStore, name: str | None, prompt: str, negative: str,
                      selected: list[str] | None) -> tuple[Any, Any, str]:
    """Add or replace the style; returns updates for (tab dropdown, name dropdown, status)."""
    name = (name or "").strip()
    try:
        store.save(PromptStyle(name, prompt or "", negative or ""))
    except RequestValidationError as error:
        return gr.update(), gr.update(), _status(f"Style not saved: {error.message}.", is_error=True)
    except OSError as error:
        return gr.update(), gr.update(), _status(f"Style not saved: {error}", is_error=True)
    choices = _choices(store)
    return (gr.update(choices=choices, value=list(selected or [])), gr.update(choices=choices, value=name),
            _status(f"Saved style {name!r}."))


def delete_edited_style(store: StyleStore, name: str | None,
                        selected: list[str] | None) -> tuple[Any, Any, Any, Any, str]:
    """Remove the style and unselect it in the tab.

    Returns updates for (tab dropdown, name dropdown, prompt, negative prompt, status).
    """
    name = (name or "").strip()
    unchanged = (gr.update(),) * 4
    if not name:
        return *unchanged, _status("Pick the style to delete first.", is_error=True)
    try:
        store.delete(name)
    except RequestValidationError:
        return *unchanged, _status(f"There is no style named {name!r} to delete.", is_error=True)
    except OSError as error:
        return *unchanged, _status(f"Style not deleted: {error}", is_error=True)
    choices = _choices(store)
    kept = [n for n in selected or [] if n != name]
    return (gr.update(choices=choices, value=kept), gr.update(choices=choices, value=None), "", "",
            _status(f"Deleted style {name!r}."))


def apply_selected_styles(store: StyleStore, names: list[str] | None, prompt: str,
                          negative: str) -> tuple[Any, Any, Any]:
    """📋: write the selected styles into the prompt boxes and clear the selection (A1111)."""
    try:
        prompt, negative = store.apply(names or [], prompt or "", negative or "")
    except RequestValidationError as error:
        gr.Warning(html.escape(str(error)))
        return gr.update(), gr.update(), gr.update(choices=_choices(store))
    return prompt, negative, []


def save_prompts_as_style(store: StyleStore, name: str | None, prompt: str, negative: str,
                          selected: list[str] | None) -> tuple[Any, Any]:
    """💾: save the tab's prompts under the typed name; returns updates for (dropdown, name box)."""
    update, _, _ = save_edited_style(store, name, prompt, negative, selected)
    return update, gr.update()


def close_editor() -> Any:
    """Hide the panel (nothing unsaved is written)."""
    return gr.update(visible=False)


def build_style_editor(tabname: str) -> StyleEditor:
    """The hidden editor panel; call where it should appear (under the prompts)."""
    with gr.Group(visible=False, elem_id=f"{tabname}_styles_dialog") as panel:
        with gr.Row():
            name = gr.Dropdown([], value=None, label="Style", allow_custom_value=True, info=STYLE_HINT,
                               elem_id=f"{tabname}_styles_edit_select", scale=6)
            refresh = gr.Button("🔄", elem_id=f"{tabname}_styles_edit_refresh", min_width=40, scale=0)
            copy = gr.Button("⬅️ From prompts", elem_id=f"{tabname}_style_copy", min_width=40, scale=0)
        prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tabname}_edit_style_prompt")
        negative = gr.Textbox(label="Negative prompt", lines=3, elem_id=f"{tabname}_edit_style_neg_prompt")
        with gr.Row():
            save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_edit_style_save")
            delete = gr.Button("Delete", variant="stop", elem_id=f"{tabname}_edit_style_delete")
            close = gr.Button("Close", elem_id=f"{tabname}_edit_style_close")
        status = gr.HTML("", elem_id=f"{tabname}_edit_style_status")
    buttons = {"refresh": refresh, "copy": copy, "save": save, "delete": delete, "close": close}
    return StyleEditor(panel, name, prompt, negative, status, buttons)


def _bind(store: StyleStore, fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *values: fn(store, *values)


def wire_style_buttons(store: StyleStore, c: dict[str, Any], editor: StyleEditor) -> None:
    """Wire 📋/💾/✏️ and the editor to the tab's prompts (``c["prompt"]``, ``c["negative_prompt"]``)."""
    boxes, styles = [c["prompt"], c["negative_prompt"]], c["styles"]
    private = {"api_visibility": "private"}
    # Handlers that may warn run on the queue: gradio shows gr.Warning only for queued events.
    c["apply_styles"].click(_bind(store, apply_selected_styles), inputs=[styles, *boxes],
                            outputs=[*boxes, styles], **private)
    c["save_style"].click(_bind(store, save_prompts_as_style), inputs=[c["style_name"], *boxes, styles],
                          outputs=[styles, c["style_name"]], **private)
    texts = [editor.prompt, editor.negative_prompt]
    buttons = editor.buttons
    c["edit_styles"].click(_bind(store, open_editor), inputs=[styles],
                           outputs=[editor.panel, editor.name, *texts, editor.status], queue=False, **private)
    editor.name.input(_bind(store, select_style), inputs=[editor.name], outputs=texts, queue=False, **private)
    buttons["refresh"].click(lambda name: gr.update(choices=_choices(store), value=name), inputs=[editor.name],
                             outputs=[editor.name], queue=False, **private)
    buttons["copy"].click(lambda p, n: (p, n), inputs=boxes, outputs=texts, queue=False, **private)
    buttons["save"].click(_bind(store, save_edited_style), inputs=[editor.name, *texts, styles],
                          outputs=[styles, editor.name, editor.status], **private)
    buttons["delete"].click(_bind(store, delete_edited_style), inputs=[editor.name, styles],
                            outputs=[styles, editor.name, *texts, editor.status], **private)
    buttons["close"].click(close_editor, outputs=[editor.panel], queue=False, **private)
