"""The txt2img tab: A1111's controls and labels, a live progress bar and preview, results.

Everything it shows is the shared generation form (``generation_form``); what is its own is
where the payload goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modules.ui.generation_form import (
    PAYLOAD_FIELDS,
    GenerationTab,
    build_generation_tab,
    payload_from_values,
    stream_job,
    token_count,
)

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["PAYLOAD_FIELDS", "Txt2ImgTab", "build_txt2img_tab", "payload_from_values", "stream_job",
           "token_count"]

Txt2ImgTab = GenerationTab


def build_txt2img_tab(studio: Studio) -> GenerationTab:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    return build_generation_tab(studio, "txt2img", studio.submit_txt2img)
