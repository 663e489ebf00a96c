"""The Extras tab: upscale one image, several uploaded ones, or a folder (A1111's labels and ids).

"Send to extras" fills the Single Image source. The work goes through ``Studio.submit_extras``
(the job queue), so it never runs at the same time as a generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from PIL import Image

from modules.processing.errors import ProcessingError, RequestValidationError
from modules.processing.intake.image_input import open_image_file
from modules.ui.image_format import IMAGE_FORMAT

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["SINGLE_IMAGE_TAB_ID", "ExtrasTab", "build_extras_tab", "extras_payload", "run_extras_job"]

SINGLE_IMAGE_TAB_ID = "extras_single_tab"
_MODES = ("Single Image", "Batch Process", "Batch from Directory")


@dataclass
class ExtrasTab:
    """The components other tabs (Send to) and tests reach."""

    mode_tabs: Any
    image: Any
    controls: dict[str, Any]
    gallery: Any
    info: Any


def extras_payload(resize_mode: str, resize: float, width: float, height: float, crop: bool, upscaler_1: str,
                   upscaler_2: str, visibility: float) -> dict[str, Any]:
    """The controls' values as an A1111 extras payload (``resize_mode`` 0 = Scale by, 1 = Scale to)."""
    return {"resize_mode": 1 if resize_mode == "Scale to" else 0, "upscaling_resize": float(resize),
            "upscaling_resize_w": int(width), "upscaling_resize_h": int(height), "upscaling_crop": bool(crop),
            "upscaler_1": upscaler_1, "upscaler_2": upscaler_2, "extras_upscaler_2_visibility": float(visibility)}


def _uploaded(files: Sequence[Any] | None) -> list[tuple[str, Image.Image]]:
    """The uploaded files that are images within the limits (each checked from its header before
    it is decoded); the others are skipped with a warning that says why."""
    images = []
    for item in files or []:
        path = Path(getattr(item, "name", item))
        try:
            images.append((path.name, open_image_file(path, path.name)))
        except RequestValidationError as error:
            gr.Warning(f"{path.name} {error.message}; skipped")
    return images


def _single(image: Image.Image | str | None) -> list[tuple[str, Image.Image]]:
    """The Single Image source: the upload's file (checked from its header before it is decoded),
    or a picture another tab sent."""
    if image is None or image == "":
        return []
    return [("image", image if isinstance(image, Image.Image) else open_image_file(image, "image"))]


def run_extras_job(studio: Studio, mode: str, image: Image.Image | str | None, files: Sequence[Any] | None,
                   input_dir: str, output_dir: str, payload: dict[str, Any]) -> tuple[list[Any], str]:
    """Submit the chosen mode's images, wait, and return (gallery entries, info text).

    Errors become a ``gr.Error`` naming the field, and nothing is lost: the inputs stay put.
    """
    try:
        if mode == "Batch from Directory":
            job_id = studio.submit_extras_directory(payload, input_dir, output_dir)
        else:
            images = _uploaded(files) if mode == "Batch Process" else _single(image)
            job_id = studio.submit_extras(payload, images)
    except RequestValidationError as error:
        raise gr.Error(f"{error.field}: {error.message}") from None
    except ProcessingError as error:
        raise gr.Error(str(error)) from None
    status = studio.wait(job_id)
    if status.result is None:
        raise gr.Error(status.public_error or "extras failed")
    result = status.result
    return list(result.images), "\n\n".join(result.infotexts)


def _upscale_controls(c: dict[str, Any], upscalers: list[str]) -> None:
    with gr.Tabs(elem_id="extras_resize_mode"):
        with gr.Tab("Scale by", elem_id="extras_scale_by_tab") as scale_by:
            c["upscaling_resize"] = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize",
                                              elem_id="extras_upscaling_resize")
        with gr.Tab("Scale to", elem_id="extras_scale_to_tab") as scale_to:
            with gr.Row():
                c["upscaling_resize_w"] = gr.Slider(64, 8192, value=512, step=8, label="Width",
                                                    elem_id="extras_upscaling_resize_w")
                c["upscaling_resize_h"] = gr.Slider(64, 8192, value=512, step=8, label="Height",
                                                    elem_id="extras_upscaling_resize_h")
                c["upscaling_crop"] = gr.Checkbox(True, label="Crop to fit", elem_id="extras_upscaling_crop")
    c["resize_mode"] = gr.State("Scale by")
    scale_by.select(lambda: "Scale by", outputs=[c["resize_mode"]], api_visibility="private", queue=False)
    scale_to.select(lambda: "Scale to", outputs=[c["resize_mode"]], api_visibility="private", queue=False)
    with gr.Row():
        c["upscaler_1"] = gr.Dropdown(upscalers, value=upscalers[1], label="Upscaler 1", elem_id="extras_upscaler_1")
        c["upscaler_2"] = gr.Dropdown(upscalers, value="None", label="Upscaler 2", elem_id="extras_upscaler_2")
        c["refresh"] = gr.Button("🔄", elem_id="extras_refresh_upscalers", min_width=40, scale=0)
    c["extras_upscaler_2_visibility"] = gr.Slider(0.0, 1.0, value=0.0, step=0.001, label="Upscaler 2 visibility",
                                                  elem_id="extras_upscaler_2_visibility")


def build_extras_tab(studio: Studio) -> ExtrasTab:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    c: dict[str, Any] = {}
    mode = gr.State(_MODES[0])
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_extras") as mode_tabs:
                with gr.Tab(_MODES[0], id=SINGLE_IMAGE_TAB_ID, elem_id=SINGLE_IMAGE_TAB_ID) as single:
                    # A file path, not pixels: gradio would decode an upload of any size before
                    # the handler could check it (``open_image_file`` reads the size first).
                    image = gr.Image(label="Source", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                     format=IMAGE_FORMAT, elem_id="extras_image", height=400)
                with gr.Tab(_MODES[1], id="extras_batch_process_tab", elem_id="extras_batch_process_tab") as batch:
                    files = gr.File(label="Batch Process", file_count="multiple", elem_id="extras_image_batch")
                with gr.Tab(_MODES[2], id="extras_batch_directory_tab",
                            elem_id="extras_batch_directory_tab") as directory:
                    input_dir = gr.Textbox(label="Input directory", elem_id="extras_batch_input_dir",
                                           placeholder="A directory on the same machine where the server is running.")
                    output_dir = gr.Textbox(label="Output directory", elem_id="extras_batch_output_dir",
                                            placeholder="Leave blank to save images to the default path.")
            for tab, name in ((single, _MODES[0]), (batch, _MODES[1]), (directory, _MODES[2])):
                tab.select(lambda name=name: name, outputs=[mode], api_visibility="private", queue=False)
            generate = gr.Button("Generate", variant="primary", elem_id="extras_generate")
            _upscale_controls(c, studio.context.upscalers.names())
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Result", format=IMAGE_FORMAT, type="pil", columns=2, elem_id="extras_gallery",
                                 interactive=False, height=400)
            info = gr.Textbox(label="Info", lines=4, interactive=False, elem_id="extras_info")
    names = ("resize_mode", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h", "upscaling_crop",
             "upscaler_1", "upscaler_2", "extras_upscaler_2_visibility")

    def run(mode_name: str, source: Any, uploads: Any, in_dir: str, out_dir: str, *values: Any) -> tuple[Any, str]:
        return run_extras_job(studio, mode_name, source, uploads, in_dir, out_dir, extras_payload(*values))

    generate.click(run, inputs=[mode, image, files, input_dir, output_dir, *(c[n] for n in names)],
                   outputs=[gallery, info], api_visibility="private")

    def refresh() -> tuple[Any, Any]:
        studio.context.upscalers.refresh()
        choices = studio.context.upscalers.names()
        return gr.update(choices=choices), gr.update(choices=choices)

    c["refresh"].click(refresh, outputs=[c["upscaler_1"], c["upscaler_2"]], api_visibility="private")
    return ExtrasTab(mode_tabs, image, c, gallery, info)
