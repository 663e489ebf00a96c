"""The forms follow the checkpoint's family: after a checkpoint of another family is chosen
(anywhere on the page) or on a page load, both tabs' sampler, schedule, steps, CFG and size
take its defaults; within one family nothing changes."""

from __future__ import annotations

from typing import Any

import gradio as gr

from modules.studio import Studio
from modules.ui.app import build_app
from modules.ui.family_follow import FOLLOWED_FIELDS
from tests.families.flux.tiny_flux_install import install_tiny_flux
from tests.studio_fixtures import data_dir, studio

__all__ = ["data_dir", "studio"]

FORM_IDS = {"sampler_name": "sampling", "scheduler": "scheduler", "steps": "steps", "cfg_scale": "cfg_scale",
            "width": "width", "height": "height"}


def _follow_handlers(demo: gr.Blocks) -> list[Any]:
    """Every event function whose outputs are the forms' followed fields."""
    wanted = {f"txt2img_{FORM_IDS[name]}" for name in FOLLOWED_FIELDS}
    return [fn for fn in demo.fns.values() if wanted <= {getattr(block, "elem_id", None) for block in fn.outputs}
            and len(fn.outputs) == 1 + 2 * len(FOLLOWED_FIELDS)]


def _trigger_ids(demo: gr.Blocks, fn: Any) -> set[str]:
    """The elem_ids (or "load") of what starts ``fn``, following ``.then`` chains back."""
    while fn.trigger_after is not None:
        fn = demo.fns[fn.trigger_after]
    return {"load" if event == "load" else getattr(demo.blocks.get(target), "elem_id", None)
            for target, event in fn.targets}


def test_a_checkpoint_of_another_family_sets_both_forms_to_its_defaults(studio: Studio) -> None:
    install_tiny_flux(studio.context.paths.root / "models", "bfl")
    studio.context.registry.refresh()
    studio.set_checkpoint("tiny-sd15")
    demo = build_app(studio)  # built on SD1.x: DPM++ 2M, CFG 7, the fixture's 64 px
    handlers = _follow_handlers(demo)
    triggers = set().union(*(_trigger_ids(demo, fn) for fn in handlers))
    assert {"load", "setting_sd_model_checkpoint", "settings_submit", "txt2img_checkpoints_cards_html"} <= triggers, \
        triggers
    follow = handlers[0]
    ids = [getattr(block, "elem_id", None) for block in follow.outputs[1:]]
    built = follow.fn(studio.family_defaults())
    assert all(update == gr.update() for update in built[1:])  # same family: the user's values stay

    studio.set_checkpoint("flux1-dev")
    shown, *updates = follow.fn(built[0])
    values = {elem_id: update["value"] for elem_id, update in zip(ids, updates, strict=True)}
    for tab in ("txt2img", "img2img"):
        assert values[f"{tab}_sampling"] == "Euler" and values[f"{tab}_cfg_scale"] == 1.0
        assert values[f"{tab}_steps"] == 20 and values[f"{tab}_width"] == values[f"{tab}_height"] == 1024
        assert values[f"{tab}_scheduler"] == "Automatic"
    assert "Simple" in updates[ids.index("txt2img_scheduler")]["choices"]  # Euler's schedule types
    assert (shown.sampler, shown.cfg_scale, shown.size) == ("Euler", 1.0, 1024)
    again = follow.fn(shown)[1:]  # the form shows FLUX's defaults now: a second event changes nothing
    assert all(update == gr.update() for update in again)

    studio.set_checkpoint("tiny-sd15")
    back = dict(zip(ids, follow.fn(shown)[1:], strict=True))
    assert (back["txt2img_sampling"]["value"], back["txt2img_cfg_scale"]["value"]) == ("DPM++ 2M", 7.0)
    assert back["img2img_width"]["value"] == 64
