"""The img2img tab, first part: A1111's input sub-tabs and the parameters sent to them.

Generation from this tab (resize mode, denoising strength, inpaint controls, Generate) arrives
with the img2img issue. What exists now is what "Send to img2img" / "Send to inpaint" fill:
the "img2img" image, the "Inpaint" editor (sketch the mask in white over the image), the
prompts, and ``received``, a ``gr.State`` with the other infotext values of the sent image
(A1111 payload names: sampler_name, steps, cfg_scale, seed, width, height, ...) for the
img2img issue to apply to its controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

__all__ = ["IMG2IMG_TAB_IDS", "PENDING_NOTE", "Img2ImgTab", "build_img2img_tab"]

#: ``gr.Tab`` ids of the input sub-tabs (A1111 mode 0 and 2), for ``gr.Tabs(selected=...)``.
IMG2IMG_TAB_IDS = {"img2img": "img2img_img2img_tab", "inpaint": "img2img_inpaint_tab"}
PENDING_NOTE = ("Generating from img2img and inpaint arrives with the img2img work; for now this tab receives "
                "images and their parameters from txt2img.")
MASK_COLOUR = "#ffffff"


def _mask_brush() -> gr.Brush:
    """One fixed white brush: the painted strokes are the inpaint mask (A1111's mask colour)."""
    return gr.Brush(colors=[MASK_COLOUR], default_color=MASK_COLOUR, color_mode="fixed")


@dataclass
class Img2ImgTab:
    """The components other tabs (Send to) and tests reach."""

    mode_tabs: Any
    init_image: Any
    inpaint_image: Any
    prompt: Any
    negative_prompt: Any
    received: Any  # gr.State: dict of A1111 payload values from the sent image's infotext


def build_img2img_tab() -> Img2ImgTab:
    """Build the tab's components; call inside a ``gr.Tab``."""
    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="img2img_prompt")
    negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="img2img_neg_prompt")
    gr.Markdown(PENDING_NOTE, elem_id="img2img_pending_note")
    with gr.Tabs(elem_id="mode_img2img") as mode_tabs:
        with gr.Tab("img2img", id=IMG2IMG_TAB_IDS["img2img"], elem_id=IMG2IMG_TAB_IDS["img2img"]):
            init_image = gr.Image(label="Image for img2img", type="pil", image_mode="RGBA",
                                  sources=["upload", "clipboard"], elem_id="img2img_image", height=480)
        with gr.Tab("Inpaint", id=IMG2IMG_TAB_IDS["inpaint"], elem_id=IMG2IMG_TAB_IDS["inpaint"]):
            inpaint_image = gr.ImageEditor(label="Image for inpainting with mask", type="pil", image_mode="RGBA",
                                           sources=["upload", "clipboard"], brush=_mask_brush(), layers=False,
                                           elem_id="img2maskimg", height=480)
    received = gr.State({})
    return Img2ImgTab(mode_tabs, init_image, inpaint_image, prompt, negative, received)
