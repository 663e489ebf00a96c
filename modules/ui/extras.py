"""The Extras tab, first part: the "Single Image" source that "Send to extras" fills.

Upscaling and face restoration (the postprocessing scripts, "Batch Process", "Batch from
Directory") arrive with the Extras issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

__all__ = ["PENDING_NOTE", "SINGLE_IMAGE_TAB_ID", "ExtrasTab", "build_extras_tab"]

PENDING_NOTE = "Upscaling from this tab arrives with the Extras work; for now it receives images from txt2img."
SINGLE_IMAGE_TAB_ID = "extras_single_tab"


@dataclass
class ExtrasTab:
    """The components other tabs (Send to) and tests reach."""

    mode_tabs: Any
    image: Any


def build_extras_tab() -> ExtrasTab:
    """Build the tab's components; call inside a ``gr.Tab``."""
    gr.Markdown(PENDING_NOTE, elem_id="extras_pending_note")
    with gr.Tabs(elem_id="mode_extras") as mode_tabs:
        with gr.Tab("Single Image", id=SINGLE_IMAGE_TAB_ID, elem_id=SINGLE_IMAGE_TAB_ID):
            image = gr.Image(label="Source", type="pil", sources=["upload", "clipboard"], elem_id="extras_image",
                             height=480)
    return ExtrasTab(mode_tabs, image)
