"""The txt2img tab: A1111's controls and labels, a live progress bar and preview, results.

Everything it shows is the shared generation form (``generation_form``); what is its own is
where the payload goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modules.ui.generation_form import (
    PAYLOAD_FIELDS,
    GenerationTab,
    build_generation_tab,
    payload_from_values,
    stream_job,
    token_count,
)
from modules.ui.hires_controls import HIRES_FIELDS, build_hires_controls
from modules.ui.infotext_paste import paste_txt2img, wire_infotext_drop
from modules.ui.script_controls import pasted_script_values

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["HIRES_FIELDS", "PAYLOAD_FIELDS", "Txt2ImgTab", "build_txt2img_tab", "payload_from_values", "stream_job",
           "token_count"]

Txt2ImgTab = GenerationTab


def build_txt2img_tab(studio: Studio) -> GenerationTab:
    """Build the tab's components and wire them; call inside a ``gr.Tab``."""
    upscalers = studio.hires_upscalers()
    form = build_generation_tab(studio, "txt2img", studio.submit_txt2img, extra_fields=HIRES_FIELDS,
                                below_size=lambda c: build_hires_controls(c, upscalers))
    _wire_drop(studio, form)
    return form


def _wire_drop(studio: Studio, form: GenerationTab) -> None:
    """A PNG dropped onto the prompt fills the tab as PNG Info's "Send to txt2img" does."""
    names = (*PAYLOAD_FIELDS, *HIRES_FIELDS, *form.scripts.fields, "override_settings")

    def paste(text: str) -> list[Any]:
        return paste_txt2img(text, PAYLOAD_FIELDS + HIRES_FIELDS, form.current_options(),
                             lambda params: pasted_script_values(studio, form.scripts, False, params),
                             lambda text, params: studio.context.scripts.run_callbacks("on_infotext_pasted",
                                                                                       text, params))

    wire_infotext_drop("txt2img", paste, [form.controls[name] for name in names])
