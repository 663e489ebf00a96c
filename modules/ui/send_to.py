"""Send to img2img / inpaint / extras: copy a result image (and its parameters) to another tab.

As in A1111, the image sent is the one selected in the gallery, or the first when none is;
the page then switches to the receiving tab (and its sub-tab). img2img and inpaint also get
the prompts and, in their ``received`` state, the other values of the image's infotext by
A1111 payload name, with width/height taken from the image itself (A1111 "send size").
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
from PIL import Image

from modules.ui.extras import SINGLE_IMAGE_TAB_ID, ExtrasTab
from modules.ui.img2img import IMG2IMG_TAB_IDS, Img2ImgTab
from modules.ui.infotext_paste import img2img_values
from modules.ui.output_panel import GalleryValue, OutputPanel, gallery_images

__all__ = ["pick_image", "received_values", "send_to_extras", "send_to_img2img", "wire_send_to"]

NOTHING_TO_SEND = "Nothing to send: generate an image first."


def pick_image(gallery: GalleryValue, infotexts: Sequence[str] | None,
               index: int | None) -> tuple[Image.Image, str] | None:
    """The selected image (the first when none is selected) and its infotext; None if the gallery is empty."""
    images = gallery_images(gallery)
    if not images:
        return None
    chosen = index if index is not None and 0 <= index < len(images) else 0
    texts = list(infotexts or [])
    return images[chosen], texts[chosen] if chosen < len(texts) else ""


def received_values(infotext: str, image: Image.Image | None = None,
                    current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values a receiving tab uses, by A1111 payload name (``infotext_paste.img2img_values``),
    with width/height taken from ``image`` when there is one (A1111 "send size")."""
    values = img2img_values(infotext, current)
    if image is not None:
        values["width"], values["height"] = image.size
    return values


def _nothing(count: int) -> tuple[Any, ...]:
    gr.Warning(html.escape(NOTHING_TO_SEND))
    return (gr.update(),) * count


def send_to_img2img(gallery: GalleryValue, infotexts: Sequence[str] | None, index: int | None,
                    mode: str = "img2img", current: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """Updates for (image, prompt, negative prompt, received, top tabs, img2img sub-tabs).

    ``mode``: "img2img" fills the plain image input, "inpaint" the mask editor (as its background);
    ``current``: the options the infotext's settings are compared with (``received_values``).
    """
    picked = pick_image(gallery, infotexts, index)
    if picked is None:
        return _nothing(6)
    image, infotext = picked
    values = {**received_values(infotext, image, current), "mode": "Inpaint" if mode == "inpaint" else "img2img"}
    target: Any = image if mode == "img2img" else {"background": image, "layers": [], "composite": image}
    return (target, values.get("prompt", ""), values.get("negative_prompt", ""), values,
            gr.Tabs(selected="img2img"), gr.Tabs(selected=IMG2IMG_TAB_IDS[mode]))


def send_to_extras(gallery: GalleryValue, infotexts: Sequence[str] | None, index: int | None) -> tuple[Any, ...]:
    """Updates for (extras source image, top tabs, extras sub-tabs)."""
    picked = pick_image(gallery, infotexts, index)
    if picked is None:
        return _nothing(3)
    return picked[0], gr.Tabs(selected="extras"), gr.Tabs(selected=SINGLE_IMAGE_TAB_ID)


def wire_send_to(panel: OutputPanel, tabs: Any, img2img: Img2ImgTab, extras: ExtrasTab) -> None:
    """Wire the panel's Send buttons; ``tabs`` is the page's top-level ``gr.Tabs``."""
    inputs = [panel.gallery, panel.infotexts, panel.selected]
    received = [img2img.prompt, img2img.negative_prompt, img2img.received, tabs, img2img.mode_tabs]
    # Queued (the default), so that "nothing to send" reaches the page as a warning.
    options = img2img.form.current_options
    panel.buttons["img2img"].click(lambda *v: send_to_img2img(*v, mode="img2img", current=options()), inputs=inputs,
                                   outputs=[img2img.init_image, *received], api_visibility="private")
    panel.buttons["inpaint"].click(lambda *v: send_to_img2img(*v, mode="inpaint", current=options()), inputs=inputs,
                                   outputs=[img2img.inpaint_image, *received], api_visibility="private")
    panel.buttons["extras"].click(send_to_extras, inputs=inputs, outputs=[extras.image, tabs, extras.mode_tabs],
                                  api_visibility="private")
