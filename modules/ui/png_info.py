"""PNG Info tab: read an image's A1111 infotext and send it to txt2img, img2img or inpaint.

The infotext is attacker-controlled text: it is shown in a plain text box, never as HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from modules.processing.errors import RequestValidationError
from modules.processing.image_formats import embedded_infotext
from modules.processing.infotext import parse_infotext
from modules.processing.request_infotext import txt2img_values_from_infotext
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.img2img import Img2ImgTab
from modules.ui.send_to import send_to_img2img

__all__ = ["build_png_info_tab", "read_infotext", "send_file_to_img2img", "txt2img_values_from_infotext"]

#: PNG text chunks larger than this are ignored (Pillow's own cap is 1 MB per chunk).
MAX_INFOTEXT_CHARS = 64 * 1024


def read_infotext(path: str | Path | None) -> tuple[str, dict[str, str]]:
    """The infotext stored in an image file and its parsed fields ("" and {} if none)."""
    if not path:
        return "", {}
    try:
        with Image.open(path) as image:
            text = embedded_infotext(image)
    except (UnidentifiedImageError, OSError) as error:
        raise gr.Error(f"Not an image this app can read: {error}") from None
    text = text[:MAX_INFOTEXT_CHARS]
    return text, (parse_infotext(text) if text.strip() else {})


def send_file_to_img2img(path: str | None, text: str, mode: str) -> tuple[Any, ...]:
    """The Send-to-img2img/inpaint updates for the image at ``path`` and its infotext."""
    if not path:
        raise gr.Error("Upload an image first.")
    with Image.open(path) as opened:
        image = opened.convert("RGBA")
    return send_to_img2img([(image, "")], [text], 0, mode=mode)


def build_png_info_tab(txt2img_controls: dict[str, Any], tabs: Any, field_order: tuple[str, ...],
                       img2img: Img2ImgTab | None = None,
                       script_values: Callable[[dict[str, str]], list[Any]] | None = None,
                       script_fields: tuple[str, ...] = (),
                       pasted: Callable[[str, dict[str, str]], None] | None = None) -> Any:
    """Build the tab; "Send to txt2img" fills ``txt2img_controls`` and switches ``tabs`` to txt2img;
    "Send to img2img"/"Send to inpaint" send the image with its parameters to ``img2img``.

    ``script_values(parsed infotext)`` gives the updates of the txt2img script controls named in
    ``script_fields`` (scripts read their own infotext keys back); ``pasted(text, fields)`` may
    rewrite the parsed fields first."""
    with gr.Row():
        image = gr.Image(label="Source", type="filepath", sources=["upload", "clipboard"], format=IMAGE_FORMAT,
                         elem_id="pnginfo_image", image_mode=None)
        with gr.Column():
            raw = gr.Textbox(label="Parameters", lines=8, interactive=False, elem_id="pnginfo_generation_info")
            fields = gr.JSON(label="Parsed fields", elem_id="pnginfo_fields")
            with gr.Row():
                send = gr.Button("Send to txt2img", elem_id="pnginfo_send_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_img2img", visible=img2img is not None)
                to_inpaint = gr.Button("Send to inpaint", elem_id="pnginfo_send_inpaint", visible=img2img is not None)
    image.change(read_infotext, inputs=[image], outputs=[raw, fields], api_visibility="private")

    def send_to_txt2img(text: str) -> list[Any]:
        if not text.strip():
            raise gr.Error("This image has no generation parameters.")
        params = dict(parse_infotext(text))
        if pasted is not None:
            pasted(text, params)  # extensions may rewrite the fields (A1111 on_infotext_pasted)
        try:
            values = txt2img_values_from_infotext(params)
        except RequestValidationError as error:
            raise gr.Error(f"Cannot use these parameters: {error}") from None
        scripts = script_values(params) if script_values else []
        return [values[name] for name in field_order] + scripts + [gr.Tabs(selected="txt2img")]

    outputs = [txt2img_controls[n] for n in (*field_order, *(script_fields if script_values else ()))]
    send.click(send_to_txt2img, inputs=[raw], outputs=[*outputs, tabs], api_visibility="private")
    if img2img is not None:
        received = [img2img.prompt, img2img.negative_prompt, img2img.received, tabs, img2img.mode_tabs]
        to_img2img.click(lambda path, text: send_file_to_img2img(path, text, "img2img"), inputs=[image, raw],
                         outputs=[img2img.init_image, *received], api_visibility="private")
        to_inpaint.click(lambda path, text: send_file_to_img2img(path, text, "inpaint"), inputs=[image, raw],
                         outputs=[img2img.inpaint_image, *received], api_visibility="private")
    return image
