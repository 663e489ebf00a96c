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
from modules.ui.hires_controls import HIRES_FIELDS, build_hires_controls

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["HIRES_FIELDS", "PAYLOAD_FIELDS", "Txt2ImgTab", "build_txt2img_tab", "payload_from_values", "stream_job",
           "token_count"]

Txt2ImgTab = GenerationTab


def build_txt2img_tab(studio: Studio) -> GenerationTab:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    upscalers = studio.hires_upscalers()
    return build_generation_tab(studio, "txt2img", studio.submit_txt2img, extra_fields=HIRES_FIELDS,
                                below_size=lambda c: build_hires_controls(c, upscalers))
