"""PNG Info tab: read an image's A1111 infotext and send it to txt2img, img2img or inpaint.

The infotext is attacker-controlled text: it is shown in a plain text box, never as HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from modules.processing.errors import RequestValidationError
from modules.processing.intake.image_input import open_image_file
from modules.processing.output.image_formats import embedded_infotext
from modules.processing.output.infotext import parse_infotext
from modules.processing.output.request_infotext import txt2img_values_from_infotext
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.img2img import Img2ImgTab
from modules.ui.infotext_paste import MAX_INFOTEXT_CHARS, paste_txt2img
from modules.ui.send_to import send_to_img2img

__all__ = ["build_png_info_tab", "read_infotext", "send_file_to_img2img", "txt2img_values_from_infotext"]


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


def send_file_to_img2img(path: str | None, text: str, mode: str,
                         current: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The Send-to-img2img/inpaint updates for the image at ``path`` and its infotext (its settings
    compared with the ``current`` options)."""
    if not path:
        raise gr.Error("Upload an image first.")
    try:  # the size is checked from the header before the pixels are decoded
        image = open_image_file(path, "image").convert("RGBA")
    except RequestValidationError as error:
        raise gr.Error(f"{error.field}: {error.message}") from None
    return send_to_img2img([(image, "")], [text], 0, mode=mode, current=current)


def build_png_info_tab(txt2img_controls: dict[str, Any], tabs: Any, field_order: tuple[str, ...],
                       img2img: Img2ImgTab | None = None,
                       script_values: Callable[[dict[str, str]], list[Any]] | None = None,
                       script_fields: tuple[str, ...] = (),
                       pasted: Callable[[str, dict[str, str]], None] | None = None,
                       current_options: Callable[[], Mapping[str, Any]] | None = None) -> Any:
    """Build the tab; "Send to txt2img" fills ``txt2img_controls`` and switches ``tabs`` to txt2img;
    "Send to img2img"/"Send to inpaint" send the image with its parameters to ``img2img``.

    ``script_values(parsed infotext)`` gives the updates of the txt2img script controls named in
    ``script_fields`` (scripts read their own infotext keys back); ``pasted(text, fields)`` may
    rewrite the parsed fields first. The settings the infotext records become chips of txt2img's
    "Override settings" (``txt2img_controls["override_settings"]``) where they differ from
    ``current_options()`` (default: the img2img tab's, which are the studio's)."""
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

    if current_options is None and img2img is not None:
        current_options = img2img.form.current_options
    has_overrides = "override_settings" in txt2img_controls

    def send_to_txt2img(text: str) -> list[Any]:
        current = current_options() if current_options else None
        updates = paste_txt2img(text, field_order, current, script_values, pasted)
        return (updates if has_overrides else updates[:-1]) + [gr.Tabs(selected="txt2img")]

    names = (*field_order, *(script_fields if script_values else ()), *(("override_settings",) * has_overrides))
    outputs = [txt2img_controls[n] for n in names]
    send.click(send_to_txt2img, inputs=[raw], outputs=[*outputs, tabs], api_visibility="private")
    if img2img is not None:
        _wire_img2img_sends(image, raw, tabs, img2img, (to_img2img, to_inpaint))
    return image


def _wire_img2img_sends(image: Any, raw: Any, tabs: Any, img2img: Img2ImgTab, buttons: tuple[Any, Any]) -> None:
    """"Send to img2img"/"Send to inpaint": the file and its parameters to the img2img tab."""
    received = [img2img.prompt, img2img.negative_prompt, img2img.received, tabs, img2img.mode_tabs]
    options = img2img.form.current_options
    for button, mode, target in zip(buttons, ("img2img", "inpaint"), (img2img.init_image, img2img.inpaint_image),
                                    strict=True):
        button.click(lambda path, text, mode=mode: send_file_to_img2img(path, text, mode, options()),
                     inputs=[image, raw], outputs=[target, *received], api_visibility="private")
