"""The Extensions tab: what is installed and in what state, switching extensions on and off,
and installing from a git URL or a local folder (only where the launch flags allow it)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.extensions.manager import ExtensionInstallError
from modules.processing.errors import ProcessingError

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["build_extensions_tab", "extension_rows"]

HEADERS = ["Extension", "Version", "Enabled", "Status", "Description"]
RESTART_NOTE = ("Jobs use the new set of scripts at once; controls of newly added or removed always-on scripts "
                "appear on the page after a restart.")
LOCKED_NOTE = ("Installing is off because the server can be reached by others (--listen, --share or a public "
               "--server-name); start it with --enable-insecure-extension-access to allow it.")


def extension_rows(studio: Studio) -> list[list[Any]]:
    """One table row per extension: name, version, enabled, status (ok or the error), description."""
    errors = studio.context.scripts.errors
    rows = []
    for info in studio.extensions():
        problems = [e for e in errors if e.startswith(str(info.path))]
        status = info.error or ("; ".join(problems) if problems else ("ok" if info.enabled else "off"))
        rows.append([info.name, info.version, "yes" if info.enabled else "no", status, info.description])
    return rows


def _enabled_names(studio: Studio) -> list[str]:
    return [info.name for info in studio.extensions() if info.enabled]


def build_extensions_tab(studio: Studio) -> None:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    names = [info.name for info in studio.extensions() if info.error is None]
    with gr.Tab("Installed"):
        table = gr.Dataframe(extension_rows(studio), headers=HEADERS, interactive=False, elem_id="extensions_table")
        enabled = gr.CheckboxGroup(names, value=_enabled_names(studio), label="Enabled extensions",
                                   elem_id="extensions_enabled")
        with gr.Row():
            apply = gr.Button("Apply", variant="primary", elem_id="extensions_apply")
            reload = gr.Button("Reload scripts", elem_id="extensions_reload")
        message = gr.Markdown(RESTART_NOTE, elem_id="extensions_message")
    allowed = studio.context.extension_install_allowed
    with gr.Tab("Install"):
        source = gr.Textbox(label="Git URL or local folder", interactive=allowed, elem_id="extensions_source",
                            placeholder="https://github.com/owner/extension.git  or  /path/to/extension")
        folder_name = gr.Textbox(label="Folder name (empty: from the URL or folder)", interactive=allowed,
                                 elem_id="extensions_name")
        install = gr.Button("Install", variant="primary", interactive=allowed, elem_id="extensions_install")
        install_message = gr.Markdown("" if allowed else LOCKED_NOTE, elem_id="extensions_install_message")

    def refreshed(note: str) -> tuple[Any, ...]:
        choices = [info.name for info in studio.extensions() if info.error is None]
        return (extension_rows(studio), gr.update(choices=choices, value=_enabled_names(studio)),
                html.escape(note))

    def apply_changes(checked: list[str]) -> tuple[Any, ...]:
        errors = studio.set_extensions_enabled({name: name in checked for name in names})
        return refreshed(f"Applied. {RESTART_NOTE}" + (f" Errors: {'; '.join(errors)}" if errors else ""))

    def reload_all() -> tuple[Any, ...]:
        errors = studio.reload_scripts()
        return refreshed("Reloaded." + (f" Errors: {'; '.join(errors)}" if errors else ""))

    def install_one(where: str, name: str) -> tuple[Any, ...]:
        try:
            path = studio.install_extension(where, name)
        except (ExtensionInstallError, ProcessingError) as error:
            raise gr.Error(html.escape(str(error))) from None
        return (*refreshed(RESTART_NOTE), html.escape(f"Installed into {path}."))

    private = {"api_visibility": "private"}
    apply.click(apply_changes, inputs=[enabled], outputs=[table, enabled, message], **private)
    reload.click(reload_all, outputs=[table, enabled, message], **private)
    install.click(install_one, inputs=[source, folder_name], outputs=[table, enabled, message, install_message],
                  **private)
