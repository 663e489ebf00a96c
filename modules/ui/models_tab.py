"""The Models tab: one table per kind of model file, a detail panel with the user's notes,
install from a URL or a path, delete, hashing in the background, and memory.

Installing and deleting change files on the server, so they follow the Extensions tab's rule:
only on a server bound to this machine, or with ``--enable-insecure-extension-access``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.models.catalog import USER_METADATA_FIELDS, ModelEntry
from modules.models.files import ModelFileError
from modules.models.install import ModelInstallError
from modules.ui.image_format import IMAGE_FORMAT

if TYPE_CHECKING:
    from modules.studio import Studio
    from modules.ui.checkpoint_lists import CheckpointLists

__all__ = ["KIND_LABELS", "TABLE_HEADERS", "build_models_tab", "table_rows"]

KIND_LABELS = {"Checkpoints": "checkpoints", "LoRA": "lora", "VAE": "vae", "Embeddings": "embeddings",
               "Upscalers": "upscalers", "ControlNet": "controlnet"}
TABLE_HEADERS = ["Name", "Family", "Size (MB)", "Hash", "Trigger words", "Preview", "Status"]
LOCKED_NOTE = ("Installing and deleting models is off on a server others can reach; start it with "
               "--enable-insecure-extension-access to allow it.")


def table_rows(entries: list[ModelEntry]) -> list[list[Any]]:
    """The table's rows: name, family, size in MB, short hash (or "" until hashed), trigger words,
    preview, and status ("ok", or "blocked: " and why the file cannot be loaded)."""
    return [[e.name, e.family, round(e.size_bytes / 2**20, 1), e.short_hash or "",
             e.trigger_words, "yes" if e.preview else "", f"blocked: {e.blocked}" if e.blocked else "ok"]
            for e in entries]


def _user_error(error: Exception) -> gr.Error:
    if isinstance(error, ModelFileError):  # its str() starts with the server's path
        return gr.Error(error.public_message)
    if isinstance(error, ModelInstallError):  # its str() is already "field: message"
        return gr.Error(f"{error.field}: {error.message}")
    return gr.Error(str(error))


def _detail(studio: Studio, label: str, name: str) -> tuple[Any, ...]:
    """Preview, metadata JSON and the notes fields of the chosen model."""
    if not name:
        return (None, {}, *("" for _ in USER_METADATA_FIELDS))
    entry = studio.model_tools.details(KIND_LABELS[label], name)
    info = {"path": str(entry.path), "size_bytes": entry.size_bytes, "family": entry.family,
            "sha256_short": entry.short_hash, "trained_words": list(entry.trained_words),
            "training": dict(entry.training), "metadata": dict(entry.metadata)}
    preview = str(entry.preview) if entry.preview else None
    return (preview, json.loads(json.dumps(info, default=str)),
            *(entry.user_metadata.get(key, "") for key in USER_METADATA_FIELDS))


def _listing(studio: Studio, label: str) -> tuple[Any, Any]:
    entries = studio.model_tools.entries(KIND_LABELS[label])
    return table_rows(entries), gr.update(choices=[e.name for e in entries], value=None)


def _install_section(studio: Studio, kind: Any, status: Any, listing_outputs: list[Any]) -> list[Any]:
    """The install accordion; returns the install events (none where installing is off)."""
    allowed = studio.context.extension_install_allowed
    with gr.Accordion("Install a model", open=False, elem_id="models_install"):
        if not allowed:
            gr.Markdown(LOCKED_NOTE)
        with gr.Row():
            url = gr.Textbox(label="URL (http or https)", elem_id="models_install_url", interactive=allowed)
            sha256 = gr.Textbox(label="Expected SHA-256 (optional)", elem_id="models_install_sha256",
                                interactive=allowed)
            filename = gr.Textbox(label="File name (optional)", elem_id="models_install_filename",
                                  interactive=allowed)
        install_url = gr.Button("Download and install", elem_id="models_install_url_button", interactive=allowed)
        with gr.Row():
            source = gr.Textbox(label="Or a file on the server", elem_id="models_install_path", interactive=allowed)
            install_path = gr.Button("Install from path", elem_id="models_install_path_button",
                                     interactive=allowed)

    def from_url(label: str, link: str, digest: str, name: str, progress: Any = gr.Progress()) -> Any:  # noqa: B008
        def report(done: int, total: int | None) -> None:
            progress(done / total if total else None, desc=f"{done / 2**20:.1f} MB")

        try:
            path = studio.model_tools.install_url(KIND_LABELS[label], link, digest, name, report)
        except (ModelInstallError, ModelFileError, OSError) as error:
            raise _user_error(error) from None
        return (f"Installed {path.name}", *_listing(studio, label))

    def from_path(label: str, path_text: str) -> Any:
        try:
            path = studio.model_tools.install_path(KIND_LABELS[label], path_text)
        except (ModelInstallError, ModelFileError, OSError) as error:
            raise _user_error(error) from None
        return (f"Installed {path.name}", *_listing(studio, label))

    if not allowed:
        return []
    return [install_url.click(from_url, inputs=[kind, url, sha256, filename], outputs=[status, *listing_outputs],
                              api_visibility="private"),
            install_path.click(from_path, inputs=[kind, source], outputs=[status, *listing_outputs],
                               api_visibility="private")]


def _memory_section(studio: Studio) -> None:
    with gr.Accordion("Memory", open=False, elem_id="models_memory"):
        usage = gr.JSON(label="Memory use (bytes)", elem_id="models_memory_usage")
        with gr.Row():
            show = gr.Button("🔄 Show", elem_id="models_memory_refresh")
            unload = gr.Button("Unload checkpoints", elem_id="models_unload")
            reload = gr.Button("Reload checkpoint", elem_id="models_reload")
    private = {"api_visibility": "private"}
    show.click(studio.model_tools.memory, outputs=[usage], **private)
    unload.click(lambda: (studio.context.models.unload_all(), studio.model_tools.memory())[1], outputs=[usage],
                 **private)

    def reload_current() -> Any:
        studio.ensure_libraries()
        try:
            studio.context.models.reload_current()
        except ModelFileError as error:  # changed on disk into a file that will not load
            raise _user_error(error) from None
        return studio.model_tools.memory()

    reload.click(reload_current, outputs=[usage], **private)


def build_models_tab(studio: Studio, lists: CheckpointLists | None = None) -> None:
    """Build the tab's components and wire them; call inside a ``gr.Tab``. With ``lists``, its
    checkpoint table joins the page's checkpoint lists: an install, a delete or a 🔄 here
    updates the others, and theirs update this one."""
    with gr.Row():
        kind = gr.Radio(list(KIND_LABELS), value="Checkpoints", label="Kind", elem_id="models_kind")
        refresh = gr.Button("🔄 Refresh", elem_id="models_refresh", scale=0)
        hash_button = gr.Button("Compute hashes", elem_id="models_hash", scale=0)
    status = gr.Markdown("", elem_id="models_status")
    rows = table_rows(studio.model_tools.entries("checkpoints"))
    table = gr.Dataframe(value=rows, headers=TABLE_HEADERS, interactive=False, elem_id="models_table", wrap=True)
    with gr.Row():
        with gr.Column():
            chosen = gr.Dropdown([r[0] for r in rows], value=None, label="Model", elem_id="models_chosen")
            preview = gr.Image(label="Preview", type="filepath", interactive=False, height=200,
                               elem_id="models_preview", format=IMAGE_FORMAT)
            details = gr.JSON(label="Details and file metadata", elem_id="models_details")
        with gr.Column():
            notes = [gr.Textbox(label=key.capitalize(), elem_id=f"models_note_{key.replace(' ', '_')}")
                     for key in USER_METADATA_FIELDS]
            save = gr.Button("💾 Save notes", elem_id="models_save_notes")
            confirm = gr.Checkbox(False, label="Yes, delete this file", elem_id="models_delete_confirm",
                                  interactive=studio.context.extension_install_allowed)
            delete = gr.Button("🗑️ Delete", variant="stop", elem_id="models_delete",
                               interactive=studio.context.extension_install_allowed)
    installs = _install_section(studio, kind, status, [table, chosen])
    _memory_section(studio)
    changes = _wire(studio, kind, refresh, hash_button, status, table, chosen, preview, details, notes, save,
                    confirm, delete)
    if lists is not None:
        lists.models = (kind, table, chosen)
        lists.after(*installs, *changes)


def _wire(studio: Studio, kind: Any, refresh: Any, hash_button: Any, status: Any, table: Any, chosen: Any,
          preview: Any, details: Any, notes: list[Any], save: Any, confirm: Any, delete: Any) -> list[Any]:
    """Wire the tab; returns the events that change the files listed (🔄 and delete)."""
    private = {"api_visibility": "private"}

    def listing(label: str) -> tuple[Any, Any]:
        if KIND_LABELS[label] == "checkpoints":
            studio.context.registry.refresh()
        return _listing(studio, label)

    kind.change(listing, inputs=[kind], outputs=[table, chosen], **private)
    refreshed = refresh.click(listing, inputs=[kind], outputs=[table, chosen], **private)
    chosen.change(lambda label, name: _detail(studio, label, name), inputs=[kind, chosen],
                  outputs=[preview, details, *notes], **private)

    timer = gr.Timer(1.0, active=False)

    def hashing_status() -> tuple[str, Any]:
        hasher = studio.model_tools.hasher
        if hasher is None:
            return "", gr.Timer(active=False)
        progress = hasher.progress
        if progress.is_running:
            return f"Hashing {progress.done}/{progress.total}: {progress.current}", gr.Timer(active=True)
        failed = f" ({len(progress.failed)} could not be read)" if progress.failed else ""
        return f"Hashed {progress.done}/{progress.total} files{failed}. Refresh shows them.", gr.Timer(active=False)

    def hash_all(label: str) -> tuple[str, Any]:
        studio.model_tools.start_hashing(KIND_LABELS[label])
        return hashing_status()

    hash_button.click(hash_all, inputs=[kind], outputs=[status, timer], **private)
    timer.tick(hashing_status, outputs=[status, timer], **private)

    def save_notes(label: str, name: str, *values: str) -> str:
        if not name:
            raise gr.Error("Choose a model first.")
        try:
            studio.model_tools.save_notes(KIND_LABELS[label], name, dict(zip(USER_METADATA_FIELDS, values,
                                                                             strict=True)))
        except (ModelInstallError, OSError) as error:
            raise _user_error(error) from None
        return f"Saved the notes of {name}."

    save.click(save_notes, inputs=[kind, chosen, *notes], outputs=[status], **private)

    def delete_file(label: str, name: str, sure: bool) -> tuple[Any, ...]:
        if not name:
            raise gr.Error("Choose a model first.")
        if not sure:
            raise gr.Error("Tick \"Yes, delete this file\" first.")
        try:
            path = studio.model_tools.delete(KIND_LABELS[label], name)
        except (ModelInstallError, OSError) as error:
            raise _user_error(error) from None
        return (f"Deleted {path.name}.", *_listing(studio, label), False)

    deleted = delete.click(delete_file, inputs=[kind, chosen, confirm], outputs=[status, table, chosen, confirm],
                           **private)
    return [refreshed, deleted]
