"""The generation forms follow the checkpoint's model family.

A form starts at the current checkpoint's family defaults (``Studio.family_defaults``: A1111's
DPM++ 2M at CFG 7 and 512 px for SD1.x, Euler at CFG 1 and 1024 px for FLUX.1). When the user
then picks a checkpoint of another family (quicksettings, a checkpoint card, the Settings tab),
or a page opens after the checkpoint changed since the page was built, the sampler, schedule
type, steps, CFG scale and size of every form switch to the new family's defaults, as Forge's
UI preset does: CFG 7 on FLUX.1-dev would run real CFG at twice the cost and burn the image.
Between checkpoints of one family the user's values stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.families.base import FamilyDefaults
from modules.ui.generation_form import scheduler_choices

if TYPE_CHECKING:
    from modules.studio import Studio

__all__ = ["FOLLOWED_FIELDS", "form_updates", "wire_family_defaults"]

# The form controls a family change sets, in the order ``form_updates`` returns them.
FOLLOWED_FIELDS = ("sampler_name", "scheduler", "steps", "cfg_scale", "width", "height")


def form_updates(shown: FamilyDefaults, now: FamilyDefaults) -> list[Any]:
    """Updates for one form's ``FOLLOWED_FIELDS``: ``now``'s values when the defaults the form
    was last set to (``shown``) differ from them, else no change."""
    if shown == now:
        return [gr.update() for _ in FOLLOWED_FIELDS]
    return [gr.update(value=now.sampler), scheduler_choices(now.sampler, now.scheduler), gr.update(value=now.steps),
            gr.update(value=now.cfg_scale), gr.update(value=now.size), gr.update(value=now.size)]


def wire_family_defaults(studio: Studio, demo: gr.Blocks, forms: Iterable[dict[str, Any]],
                         changes: Iterable[Any]) -> None:
    """After the page loads and after each of ``changes`` (gradio events that may change the
    current checkpoint), set every form in ``forms`` (a tab's controls) to the current family's
    defaults if they differ from those it was last set to (kept per browser session)."""
    shown = gr.State(studio.family_defaults())
    outputs = [shown, *(form[name] for form in forms for name in FOLLOWED_FIELDS)]
    count = (len(outputs) - 1) // len(FOLLOWED_FIELDS)

    def follow(last: FamilyDefaults) -> list[Any]:
        now = studio.family_defaults()
        return [now, *(update for _ in range(count) for update in form_updates(last, now))]

    quiet = {"show_progress": "hidden", "api_visibility": "private"}
    demo.load(follow, inputs=[shown], outputs=outputs, **quiet)
    for event in changes:
        event.then(follow, inputs=[shown], outputs=outputs, **quiet)
