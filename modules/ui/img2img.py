"""The img2img tab: A1111's input sub-tabs (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint
upload, Batch), resize mode, inpaint controls, denoising strength and the outpainting
scripts, on the same generation form as txt2img.

"Send to img2img/inpaint" fills the image, the prompts and ``received`` (a ``gr.State`` of the
sent image's parameters by A1111 payload name), which sets the sampler/steps/CFG/seed/size,
denoising strength, the inpaint controls and the "Override settings" chips; a PNG dropped onto
the prompt fills ``received`` the same way (``infotext_paste``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.processing.editing.image_ops import RESIZE_MODES
from modules.processing.editing.img2img_request import INPAINT_AREAS, MASK_MODES, MASKED_CONTENT
from modules.processing.editing.outpainting import DIRECTIONS, OUTPAINT_SCRIPTS
from modules.ui.generation_form import GenerationTab, build_generation_tab
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.img2img_payload import INPAINT_MODES, build_img2img_payload, inpaint_flags, settings_payload
from modules.ui.infotext_paste import (
    INFOTEXT_FIELDS,
    current_options,
    img2img_values,
    override_update,
    wire_infotext_drop,
)
from modules.ui.script_controls import pasted_script_values

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["IMG2IMG_TAB_IDS", "INFOTEXT_FIELDS", "Img2ImgTab", "build_img2img_tab", "img2img_submit",
           "received_updates"]

#: ``gr.Tab`` ids of the input sub-tabs, for ``gr.Tabs(selected=...)``.
IMG2IMG_TAB_IDS = {"img2img": "img2img_img2img_tab", "sketch": "img2img_sketch_tab",
                   "inpaint": "img2img_inpaint_tab", "inpaint sketch": "img2img_inpaint_sketch_tab",
                   "inpaint upload": "img2img_inpaint_upload_tab", "batch": "img2img_batch_tab"}
MASK_COLOUR = "#ffffff"
#: The controls "Send to" sets from the sent image's parameters, by A1111 payload name.
RECEIVED_FIELDS = ("sampler_name", "scheduler", "steps", "cfg_scale", "distilled_cfg_scale", "seed", "width", "height",
                   "denoising_strength", "mask_blur", "mask_mode", "inpainting_fill", "inpaint_area",
                   "inpaint_full_res_padding")
EXTRA_FIELDS = (
    "mode", "init_image", "sketch", "inpaint_image", "inpaint_sketch", "inpaint_upload_image", "inpaint_upload_mask",
    "batch_input_dir", "batch_output_dir", "batch_mask_dir", "resize_mode", "mask_blur", "mask_mode",
    "inpainting_fill", "inpaint_area", "inpaint_full_res_padding", "denoising_strength", "script_name", "pixels",
    "script_mask_blur", "script_inpainting_fill", "direction", "noise_q", "color_variation",
)


@dataclass
class Img2ImgTab:
    """The components other tabs (Send to) and tests reach."""

    form: GenerationTab
    mode_tabs: Any
    init_image: Any
    inpaint_image: Any
    prompt: Any
    negative_prompt: Any
    received: Any  # gr.State: dict of A1111 payload values from the sent image's infotext


def received_updates(values: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """Updates for the ``RECEIVED_FIELDS`` controls (the sent value where there is one), then
    for the mode and the inpaint controls' visibility (``values["mode"]``: the sub-tab opened)."""
    values = values or {}
    controls = tuple(gr.update(value=values[name]) if name in values else gr.update() for name in RECEIVED_FIELDS)
    if "mode" not in values:
        return (*controls, gr.update(), gr.update())
    return (*controls, values["mode"], gr.update(visible=values["mode"] in INPAINT_MODES))


def _editor(label: str, elem_id: str, colour_brush: bool) -> Any:
    brush = gr.Brush(default_size=16, colors=None if colour_brush else [MASK_COLOUR],
                     default_color="#ff0000" if colour_brush else MASK_COLOUR,
                     color_mode="defaults" if colour_brush else "fixed")
    # The canvas takes each image's own size (not fixed_canvas), so a 64x64 image stays 64x64.
    return gr.ImageEditor(label=label, type="pil", image_mode="RGBA", sources=["upload", "clipboard"], brush=brush,
                          eraser=gr.Eraser(default_size=16), layers=False, elem_id=elem_id, height=480,
                          format=IMAGE_FORMAT, fixed_canvas=False)


def _input_tabs(c: dict[str, Any]) -> None:
    c["mode"] = gr.State("img2img")
    with gr.Tabs(elem_id="mode_img2img") as c["mode_tabs"]:
        tabs = {}
        with gr.Tab("img2img", id=IMG2IMG_TAB_IDS["img2img"], elem_id=IMG2IMG_TAB_IDS["img2img"]) as tabs["img2img"]:
            # File paths, not pixels: gradio would decode an upload of any size before the handler
            # could check it; ``build_img2img_payload`` opens them, reading the size first.
            c["init_image"] = gr.Image(label="Image for img2img", type="filepath", image_mode=None,
                                       sources=["upload", "clipboard"], elem_id="img2img_image", height=480,
                                       format=IMAGE_FORMAT)
        with gr.Tab("Sketch", id=IMG2IMG_TAB_IDS["sketch"], elem_id=IMG2IMG_TAB_IDS["sketch"]) as tabs["Sketch"]:
            c["sketch"] = _editor("Image for img2img", "img2img_sketch", colour_brush=True)
        with gr.Tab("Inpaint", id=IMG2IMG_TAB_IDS["inpaint"], elem_id=IMG2IMG_TAB_IDS["inpaint"]) as tabs["Inpaint"]:
            c["inpaint_image"] = _editor("Image for inpainting with mask", "img2maskimg", colour_brush=False)
        with gr.Tab("Inpaint sketch", id=IMG2IMG_TAB_IDS["inpaint sketch"],
                    elem_id=IMG2IMG_TAB_IDS["inpaint sketch"]) as tabs["Inpaint sketch"]:
            c["inpaint_sketch"] = _editor("Color sketch inpainting", "inpaint_sketch", colour_brush=True)
        with gr.Tab("Inpaint upload", id=IMG2IMG_TAB_IDS["inpaint upload"],
                    elem_id=IMG2IMG_TAB_IDS["inpaint upload"]) as tabs["Inpaint upload"]:
            c["inpaint_upload_image"] = gr.Image(label="Image for img2img", type="filepath", image_mode=None,
                                                 elem_id="img_inpaint_base", format=IMAGE_FORMAT)
            c["inpaint_upload_mask"] = gr.Image(label="Mask", type="filepath", image_mode=None,
                                                elem_id="img_inpaint_mask", format=IMAGE_FORMAT)
        with gr.Tab("Batch", id=IMG2IMG_TAB_IDS["batch"], elem_id=IMG2IMG_TAB_IDS["batch"]) as tabs["Batch"]:
            gr.Markdown("Process every image of a folder on the server's disk (off when the server is reachable "
                        "by others).")
            c["batch_input_dir"] = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir")
            c["batch_output_dir"] = gr.Textbox(label="Output directory", elem_id="img2img_batch_output_dir")
            c["batch_mask_dir"] = gr.Textbox(
                label="Inpaint batch mask directory (required for inpaint batch processing only)",
                elem_id="img2img_batch_inpaint_mask_dir")
    c["input_tabs"] = tabs


def _inpaint_controls(c: dict[str, Any]) -> None:
    c["resize_mode"] = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], label="Resize mode",
                                elem_id="resize_mode")
    with gr.Group(visible=False, elem_id="img2img_inpaint_controls") as c["inpaint_controls"]:
        c["mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
        c["mask_mode"] = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode",
                                  elem_id="img2img_mask_mode")
        c["inpainting_fill"] = gr.Radio(list(MASKED_CONTENT), value="original", label="Masked content",
                                        elem_id="img2img_inpainting_fill")
        with gr.Row():
            c["inpaint_area"] = gr.Radio(list(INPAINT_AREAS), value=INPAINT_AREAS[0], label="Inpaint area",
                                         elem_id="img2img_inpaint_full_res")
            c["inpaint_full_res_padding"] = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                                      elem_id="img2img_inpaint_full_res_padding")


def _above_settings(c: dict[str, Any]) -> None:
    _input_tabs(c)
    _inpaint_controls(c)


def _outpaint_controls(c: dict[str, Any]) -> None:
    """The outpainting scripts' controls, below the Script dropdown (which lists them first)."""
    with gr.Group(visible=False, elem_id="img2img_outpaint_controls") as c["script_controls"]:
        c["pixels"] = gr.Slider(8, 256, value=128, step=8, label="Pixels to expand", elem_id="img2img_outpaint_pixels")
        c["script_mask_blur"] = gr.Slider(0, 64, value=4, step=1, label="Mask blur",
                                          elem_id="img2img_outpaint_mask_blur")
        c["direction"] = gr.CheckboxGroup(list(DIRECTIONS), value=list(DIRECTIONS), label="Outpainting direction",
                                          elem_id="img2img_outpaint_direction")
        c["script_inpainting_fill"] = gr.Radio(list(MASKED_CONTENT), value="fill", label="Masked content",
                                               elem_id="img2img_outpaint_fill")
        c["noise_q"] = gr.Slider(0.0, 4.0, value=1.0, step=0.01, label="Fall-off exponent (lower=higher detail)",
                                 elem_id="img2img_outpaint_noise_q", visible=False)
        c["color_variation"] = gr.Slider(0.0, 1.0, value=0.05, step=0.01, label="Color variation",
                                         elem_id="img2img_outpaint_color_variation", visible=False)


def _below_size(c: dict[str, Any]) -> None:
    c["denoising_strength"] = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                        elem_id="img2img_denoising_strength")


def img2img_submit(studio: Studio) -> Callable[[dict[str, Any]], str]:
    """The tab's ``submit``: its control values (by name) to a queued job id, through
    ``submit_img2img_batch`` when the Batch sub-tab is open, else ``submit_img2img``."""

    def submit(values: dict[str, Any]) -> str:
        if values["mode"] == "Batch":
            # The inpaint controls apply to the files that have a mask in the mask folder.
            payload = {**settings_payload(values), **inpaint_flags(values)}
            return studio.submit_img2img_batch(payload, values["batch_input_dir"] or "",
                                               values["batch_output_dir"] or "", values["batch_mask_dir"] or "")
        return studio.submit_img2img(build_img2img_payload(values))

    return submit


def _wire_mode_switches(c: dict[str, Any]) -> None:
    """The open sub-tab is the mode; inpaint controls show only for the inpaint modes, and each
    outpainting script shows its own controls (mk2's mask blur defaults to 8, as in A1111)."""
    for mode, tab in c["input_tabs"].items():
        shows_inpaint = mode in INPAINT_MODES or mode == "Batch"  # a batch may have a mask folder
        tab.select(lambda mode=mode, shows=shows_inpaint: (mode, gr.update(visible=shows)),
                   outputs=[c["mode"], c["inpaint_controls"]], api_visibility="private", queue=False)

    def script_chosen(name: str) -> tuple[Any, ...]:
        mk2 = name == OUTPAINT_SCRIPTS[1]
        return (gr.update(visible=name != "None"), gr.update(value=8 if mk2 else 4),
                gr.update(visible=not mk2), gr.update(visible=mk2), gr.update(visible=mk2))

    c["script_name"].change(script_chosen, inputs=[c["script_name"]],
                            outputs=[c["script_controls"], c["script_mask_blur"], c["script_inpainting_fill"],
                                     c["noise_q"], c["color_variation"]], api_visibility="private", queue=False)


def _wire_drop(studio: Studio, c: dict[str, Any], received: Any) -> None:
    """A PNG dropped onto the prompt fills the prompts and, through ``received``, the rest (as
    Send to img2img does, less the image; the size is the infotext's)."""
    def paste(text: str) -> tuple[Any, ...]:
        values = img2img_values(text, current_options(studio))
        return values.get("prompt", ""), values.get("negative_prompt", ""), values

    wire_infotext_drop("img2img", paste, [c["prompt"], c["negative_prompt"], received])


def build_img2img_tab(studio: Studio) -> Img2ImgTab:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    form = build_generation_tab(studio, "img2img", img2img_submit(studio), EXTRA_FIELDS, _above_settings, _below_size,
                                builtin_scripts=OUTPAINT_SCRIPTS, after_scripts=_outpaint_controls)
    c = form.controls
    _wire_mode_switches(c)
    received = gr.State({})
    scripts = form.scripts

    def received_with_scripts(values: Mapping[str, Any] | None) -> tuple[Any, ...]:
        values = values or {}
        chips = override_update(values["override_settings"]) if "override_settings" in values else gr.update()
        fields = values.get(INFOTEXT_FIELDS) or {}
        return (*received_updates(values), chips, *pasted_script_values(studio, scripts, True, fields))

    received.change(received_with_scripts, inputs=[received],
                    outputs=[*(c[name] for name in RECEIVED_FIELDS), c["mode"], c["inpaint_controls"],
                             c["override_settings"], *(c[key] for key in scripts.fields)],
                    api_visibility="private", queue=False)
    _wire_drop(studio, c, received)
    return Img2ImgTab(form, c["mode_tabs"], c["init_image"], c["inpaint_image"], c["prompt"],
                      c["negative_prompt"], received)
