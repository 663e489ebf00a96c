"""PNG Info tab: read an image's A1111 infotext and send it to txt2img.

The infotext is attacker-controlled text: it is shown in a plain text box, never as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from modules.processing.errors import RequestValidationError
from modules.processing.infotext import parse_infotext
from modules.processing.request_infotext import request_from_infotext

__all__ = ["build_png_info_tab", "read_infotext", "txt2img_values_from_infotext"]

#: PNG text chunks larger than this are ignored (Pillow's own cap is 1 MB per chunk).
MAX_INFOTEXT_CHARS = 64 * 1024


def read_infotext(path: str | Path | None) -> tuple[str, dict[str, str]]:
    """The infotext stored in an image file and its parsed fields ("" and {} if none)."""
    if not path:
        return "", {}
    try:
        with Image.open(path) as image:
            text = image.info.get("parameters") or image.info.get("comment") or ""
    except (UnidentifiedImageError, OSError) as error:
        raise gr.Error(f"Not an image this app can read: {error}") from None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = str(text)[:MAX_INFOTEXT_CHARS]
    return text, (parse_infotext(text) if text.strip() else {})


def txt2img_values_from_infotext(text: str) -> dict[str, Any]:
    """The txt2img control values an infotext describes, by A1111 payload name."""
    request = request_from_infotext(text)
    return {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt,
        "sampler_name": request.sampler_name, "scheduler": request.scheduler,
        "steps": request.num_inference_steps, "width": request.width, "height": request.height,
        "cfg_scale": request.guidance_scale, "seed": request.seed, "subseed": request.subseed,
        "subseed_strength": request.subseed_strength, "seed_resize_from_w": request.seed_resize_from_w,
        "seed_resize_from_h": request.seed_resize_from_h, "batch_size": 1, "n_iter": 1, "styles": [],
    }


def build_png_info_tab(txt2img_controls: dict[str, Any], tabs: Any, field_order: tuple[str, ...]) -> Any:
    """Build the tab; "Send to txt2img" fills ``txt2img_controls`` and switches ``tabs`` to txt2img."""
    with gr.Row():
        image = gr.Image(label="Source", type="filepath", sources=["upload", "clipboard"],
                         elem_id="pnginfo_image", image_mode=None)
        with gr.Column():
            raw = gr.Textbox(label="Parameters", lines=8, interactive=False, elem_id="pnginfo_generation_info")
            fields = gr.JSON(label="Parsed fields", elem_id="pnginfo_fields")
            send = gr.Button("Send to txt2img", elem_id="pnginfo_send_txt2img")
    image.change(read_infotext, inputs=[image], outputs=[raw, fields], api_visibility="private")

    def send_to_txt2img(text: str) -> list[Any]:
        if not text.strip():
            raise gr.Error("This image has no generation parameters.")
        try:
            values = txt2img_values_from_infotext(text)
        except RequestValidationError as error:
            raise gr.Error(f"Cannot use these parameters: {error}") from None
        return [values[name] for name in field_order] + [gr.Tabs(selected="txt2img")]

    send.click(send_to_txt2img, inputs=[raw], outputs=[txt2img_controls[n] for n in field_order] + [tabs],
               api_visibility="private")
    return image
