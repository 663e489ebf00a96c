"""A generation tab's results: gallery, A1111's button row under it, generation info.

Buttons: 📂 open the output folder (local servers only), 💾 Save (the selected image, or all of
them, into ``log/images`` with ``log.csv``), and the Send-to buttons (wired in ``send_to``).
The gallery's infotexts travel beside it in a ``gr.State`` (one per image), and the index of
the image the user clicked in another (None: nothing selected), so handlers never parse the
info box back. Clicking an image shows its infotext alone in Generation info (a batch grid
carries the first image's), as A1111 does.

The gallery shows every image whole (``object_fit="contain"``: a tall X/Y/Z grid is letterboxed,
never cropped) and opens in A1111's preview: the first result large, the others as thumbnails
under it; clicking the large image shows it full size (gradio's fullscreen view).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import processing_utils
from PIL import Image

from modules.processing.output.save_log import save_to_log
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.open_folder import NoFileBrowserError, Opener, ServerBinding, open_folder, system_opener

__all__ = ["GALLERY_HEIGHT", "OutputPanel", "build_output_panel", "gallery_entries", "gallery_images",
           "launched_binding", "open_output_folder", "save_images", "selected_info", "selected_items",
           "wire_open_folder", "wire_save"]

GalleryValue = Sequence[Any] | None
#: The gallery's height in pixels (A1111's ``gallery_height`` is empty: the theme's); tall enough
#: for a 512x512 image beside the settings column at 1280 px, thumbnails included.
GALLERY_HEIGHT = 560


@dataclass
class OutputPanel:
    """The components of one tab's results area."""

    gallery: Any
    info: Any
    infotexts: Any  # gr.State: list[str], one per gallery image
    selected: Any  # gr.State: int | None, the clicked image
    buttons: dict[str, Any]  # "open_folder", "save", "img2img", "inpaint", "extras"
    download: Any
    html_log: Any


def gallery_images(gallery: GalleryValue) -> list[Image.Image]:
    """The images of a gallery value (gradio passes ``(image, caption)`` pairs)."""
    return [entry[0] if isinstance(entry, (tuple, list)) else entry for entry in gallery or []]


def gallery_entries(images: Sequence[Image.Image], seeds: Sequence[int],
                    index_of_first_image: int = 0) -> list[tuple[Image.Image, str]]:
    """(image, caption) pairs for the gallery: "Grid" for the grids a result starts with, then "Seed N"."""
    return [(image, "Grid" if k < index_of_first_image else f"Seed {seed}")
            for k, (image, seed) in enumerate(zip(images, seeds, strict=True))]


def selected_info(infotexts: Sequence[str] | None, index: int | None) -> Any:
    """What Generation info shows once image ``index`` is clicked: its infotext alone (an update
    that leaves the box as it is when there is none)."""
    texts = list(infotexts or [])
    if index is None or not 0 <= index < len(texts):
        return gr.update()
    return texts[index]


def selected_items(gallery: GalleryValue, infotexts: Sequence[str] | None,
                   index: int | None) -> list[tuple[Image.Image, str]]:
    """(image, infotext) of the selected image, or of every image when none is selected."""
    images = gallery_images(gallery)
    texts = list(infotexts or [])
    items = [(image, texts[i] if i < len(texts) else "") for i, image in enumerate(images)]
    if index is not None and 0 <= index < len(items):
        return [items[index]]
    return items


def save_images(folder: Path, gallery: GalleryValue, infotexts: Sequence[str] | None,
                index: int | None) -> tuple[list[Path], str]:
    """💾: save into ``folder`` (A1111 ``log/images``); returns the new files and an HTML message."""
    items = selected_items(gallery, infotexts, index)
    if not items:
        gr.Warning("Nothing to save: generate an image first.")
        return [], ""
    try:
        paths = save_to_log(items, folder)
    except OSError as error:  # a full disk says so in words (StorageFullError); no server path either way
        message = html.escape(f"Not saved: {error.strerror or error}")
        gr.Warning(message)
        return [], f"<p>{message}</p>"
    return paths, f"<p>Saved: {html.escape(', '.join(p.name for p in paths))}</p>"


def open_output_folder(folder: Path, binding: ServerBinding, opener: Opener) -> str | None:
    """📂: open ``folder`` on this machine; a refusal or failure becomes a warning.

    Returns the message for the results' line when the folder could not be shown (a server
    without a desktop): where it is. Only a local server gets that far (``open_folder`` refuses
    an exposed one first), so the path goes to the person at that machine. None otherwise.
    """
    try:
        open_folder(folder, binding, opener)
    except NoFileBrowserError as error:
        gr.Warning(html.escape(str(error)))
        return (f"<p>{html.escape(error.reason)}, so the folder cannot be opened here. The files are in: "
                f"<code>{html.escape(str(error.folder))}</code></p>")
    except OSError as error:  # refused (no path in it), or the folder cannot be created
        gr.Warning(html.escape(str(error)))
    return None


def launched_binding(blocks: gr.Blocks) -> ServerBinding:
    """Where ``blocks`` actually serves: its bound address and share state, once ``launch`` or
    ``gr.mount_gradio_app`` (our own server) has set them; before that unknown (``server_name`` None)."""
    return ServerBinding(getattr(blocks, "server_name", None), bool(getattr(blocks, "share", False)))


def build_output_panel(tabname: str) -> OutputPanel:
    """Gallery, buttons, download list, message line and info box; call inside the results column."""
    gallery = gr.Gallery(label="Output", format=IMAGE_FORMAT, type="pil", columns=4, elem_id=f"{tabname}_gallery",
                         interactive=False, height=GALLERY_HEIGHT, object_fit="contain", allow_preview=True,
                         preview=True, buttons=["download", "fullscreen"], elem_classes=["aigen-gallery"])
    with gr.Row(elem_id=f"image_buttons_{tabname}"):
        buttons = {
            # Hidden until the page learns the server is local (see wire_open_folder).
            "open_folder": gr.Button("📂", elem_id=f"{tabname}_open_folder", visible=False, min_width=40,
                                     scale=0, size="sm"),
            "save": gr.Button("💾 Save", elem_id=f"save_{tabname}", min_width=40, size="sm"),
            "img2img": gr.Button("🖼️ Send to img2img", elem_id=f"{tabname}_send_to_img2img", min_width=40, size="sm"),
            "inpaint": gr.Button("🎨 Send to inpaint", elem_id=f"{tabname}_send_to_inpaint", min_width=40, size="sm"),
            "extras": gr.Button("📐 Send to extras", elem_id=f"{tabname}_send_to_extras", min_width=40, size="sm"),
        }
    download = gr.File(None, file_count="multiple", interactive=False, show_label=False, visible=False,
                       elem_id=f"download_files_{tabname}")
    html_log = gr.HTML("", elem_id=f"html_log_{tabname}")
    info = gr.Textbox(label="Generation info", lines=4, interactive=False, elem_id=f"{tabname}_info")
    panel = OutputPanel(gallery, info, gr.State([]), gr.State(None), buttons, download, html_log)
    _track_selection(panel)
    return panel


def _track_selection(panel: OutputPanel) -> None:
    """Remember the clicked image and show its infotext; new results or a closed preview mean
    "none selected"."""

    def select(infotexts: list[str], event: gr.SelectData) -> tuple[int | None, Any]:
        index = event.index if isinstance(event.index, int) else None
        return index, selected_info(infotexts, index)

    private = {"api_visibility": "private", "queue": False}
    panel.gallery.select(select, inputs=[panel.infotexts], outputs=[panel.selected, panel.info], **private)
    panel.gallery.change(lambda: None, outputs=[panel.selected], **private)
    panel.gallery.preview_close(lambda: None, outputs=[panel.selected], **private)


def wire_save(panel: OutputPanel, folder: Callable[[], Path]) -> None:
    """💾 saves into ``folder()`` (read at click time: the setting may change) and offers the files."""

    def save(gallery: GalleryValue, infotexts: list[str], index: int | None) -> tuple[Any, str]:
        paths, message = save_images(folder(), gallery, infotexts, index)
        # Hand gradio copies in its own cache: it refuses to serve files from a data dir outside
        # the working and temp folders, where --data-dir may well put log/images.
        cached = [processing_utils.save_file_to_cache(path, panel.download.GRADIO_CACHE) for path in paths]
        return gr.update(value=cached or None, visible=bool(cached)), message

    panel.buttons["save"].click(save, inputs=[panel.gallery, panel.infotexts, panel.selected],
                                outputs=[panel.download, panel.html_log], api_visibility="private")


def wire_open_folder(blocks: gr.Blocks, panel: OutputPanel, folder: Callable[[], Path],
                     opener: Opener | None = None) -> None:
    """Show 📂 on page load only when ``blocks`` serves on loopback; the click re-checks, and where
    the server has no desktop to open it in, the line under the images says where the folder is."""
    button = panel.buttons["open_folder"]
    blocks.load(lambda: gr.update(visible=launched_binding(blocks).is_local_only), outputs=[button],
                api_visibility="private", queue=False)

    def open_() -> Any:
        message = open_output_folder(folder(), launched_binding(blocks), opener or system_opener())
        return gr.update() if message is None else message

    # Queued, so that a refusal's gr.Warning reaches the page.
    button.click(open_, outputs=[panel.html_log], api_visibility="private")
