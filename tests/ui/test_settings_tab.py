"""The Settings tab and the page's checkpoint lists, through the handlers the page wires (no
browser): a page load shows config.json, Apply writes only what that page changed, a stale
page reverts nothing, the checkpoint is never saved empty, a merge reaches every list."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pytest

from modules.settings import Settings
from modules.studio import Studio
from modules.ui.app import build_app
from modules.ui.settings_tab import changed_settings
from tests.studio_fixtures import data_dir, studio

__all__ = ["data_dir", "studio"]


class Page:
    """One browser page of the app, as its handlers see it: the values its components show."""

    def __init__(self, demo: gr.Blocks) -> None:
        self.demo = demo
        self.values: dict[str, Any] = {}
        self.baseline: dict[str, Any] = {}

    def _fn(self, predicate: Any) -> Any:
        (found,) = [fn for fn in self.demo.fns.values() if predicate(fn)]
        return found

    def _settings_load(self) -> Any:
        return self._fn(lambda fn: any(event == "load" for _, event in fn.targets) and len(fn.outputs) > 1
                        and isinstance(fn.outputs[0], gr.State)
                        and (fn.outputs[1].elem_id or "").startswith("setting_"))

    def _keys(self) -> list[str]:
        return [block.elem_id.removeprefix("setting_") for block in self._settings_load().outputs[1:]]

    def load(self) -> Page:
        """What a page load shows in the Settings tab."""
        baseline, *updates = self._settings_load().fn()
        self.baseline = baseline
        self.values = {key: update["value"] for key, update in zip(self._keys(), updates, strict=True)}
        return self

    def apply(self, **changes: Any) -> str:
        """The user edits ``changes`` in the tab and presses Apply settings."""
        self.values.update(changes)
        apply = self._fn(lambda fn: [b.elem_id for b in fn.inputs[1:2]] == ["setting_samples_save"]
                         and fn.outputs[0].elem_id == "settings_result")
        text, self.baseline, *updates = apply.fn(self.baseline, *(self.values[key] for key in self._keys()))
        self.values = {key: update["value"] for key, update in zip(self._keys(), updates, strict=True)}
        return text


def _config(studio: Studio) -> dict[str, Any]:
    return json.loads((studio.context.paths.root / "config.json").read_text(encoding="utf-8"))


def test_changed_settings_are_the_values_that_differ_from_the_loaded_ones() -> None:
    baseline = {"eta_ddim": 0.0, "disable_token_counters": False, "quicksettings_list": ["sd_vae"]}
    values = {**baseline, "eta_ddim": 0.3, "quicksettings_list": ["sd_vae"]}
    assert changed_settings(values, baseline, Settings()) == {"eta_ddim": 0.3}
    assert changed_settings({**baseline, "quicksettings_list": ["sd_vae", "eta_ddim"]}, baseline,
                            Settings()) == {"quicksettings_list": ("sd_vae", "eta_ddim")}
    for empty in ("", None):  # a blank checkpoint dropdown is no choice
        assert changed_settings({"sd_model_checkpoint": empty}, {"sd_model_checkpoint": "a.safetensors"},
                                Settings()) == {}


def test_apply_writes_only_the_changed_keys_and_the_tab_shows_config_json(studio: Studio) -> None:
    demo = build_app(studio)
    page = Page(demo).load()
    assert page.values["eta_ddim"] == 0.0
    text = page.apply(eta_ddim=0.3)
    assert text == "1 settings changed: eta_ddim."
    assert _config(studio)["eta_ddim"] == 0.3
    assert Page(demo).load().values["eta_ddim"] == 0.3  # a reload shows it
    assert page.apply() == "0 settings changed."  # nothing touched, nothing written


def test_a_stale_page_does_not_revert_what_another_page_applied(studio: Studio) -> None:
    demo = build_app(studio)
    stale = Page(demo).load()  # loaded before the other page's Apply
    Page(demo).load().apply(eta_ddim=0.3, disable_token_counters=True)
    assert stale.values["eta_ddim"] == 0.0  # it still shows the old values ...
    assert stale.apply(CLIP_stop_at_last_layers=2) == "1 settings changed: CLIP_stop_at_last_layers."
    config = _config(studio)  # ... but its Apply changed only what its user touched
    assert (config["eta_ddim"], config["disable_token_counters"], config["CLIP_stop_at_last_layers"]) == (0.3, True, 2)
    assert stale.values["eta_ddim"] == 0.3  # and it shows config.json again


def test_the_checkpoint_is_shown_and_never_saved_empty(studio: Studio) -> None:
    demo = build_app(studio)
    page = Page(demo).load()
    shown = page.values["sd_model_checkpoint"]
    assert shown == studio.current_checkpoint() and shown.startswith("tiny-sd15")  # not blank
    page.apply(eta_ddim=0.5)
    assert _config(studio)["sd_model_checkpoint"] == ""  # the fallback shown is not written as a choice
    studio.set_checkpoint("tiny-sd15")
    chosen = studio.settings.sd_model_checkpoint
    page = Page(demo).load()
    assert page.values["sd_model_checkpoint"] == chosen
    for empty in ("", None):
        page.apply(sd_model_checkpoint=empty)
        assert _config(studio)["sd_model_checkpoint"] == chosen


def _list_refresh_after(demo: gr.Blocks, elem_id: str) -> tuple[Any, Any]:
    """The handler of ``elem_id``'s click and the checkpoint-list update chained after it (the
    family-defaults follow is chained there too)."""
    (first,) = [fn for fn in demo.fns.values() if any(getattr(demo.blocks.get(target), "elem_id", None) == elem_id
                                                      for target, _ in fn.targets)]
    (then,) = [fn for fn in demo.fns.values() if fn.trigger_after == first._id
               and "models_table" in [getattr(block, "elem_id", None) for block in fn.outputs]]
    return first, then


def test_a_merge_shows_in_every_checkpoint_list_at_once(studio: Studio) -> None:
    demo = build_app(studio)
    merge, lists = _list_refresh_after(demo, "modelmerger_merge")
    ids = [block.elem_id for block in lists.outputs]
    assert {"setting_sd_model_checkpoint", "modelmerger_primary_model_name", "modelmerger_secondary_model_name",
            "modelmerger_tertiary_model_name", "txt2img_checkpoints_cards_html", "img2img_checkpoints_cards_html",
            "models_table", "models_chosen"} <= set(ids)
    assert ids.count("setting_sd_model_checkpoint") == 2  # the quicksettings one and the Settings tab's
    values = {"primary_model": "tiny-sd15", "secondary_model": "tiny-sd15", "tertiary_model": "",
              "custom_name": "merged-lists", "multiplier": 0.5, "interp_method": "Weighted sum",
              "save_as_half": False, "config_source": "A, B or C", "bake_in_vae": "None", "discard_weights": ""}
    message, *_ = merge.fn(*values.values(), progress=None)
    assert message.startswith("Checkpoint saved: merged-lists")
    updates = dict(zip(range(len(ids)), lists.fn("Checkpoints"), strict=True))
    quick = updates[ids.index("setting_sd_model_checkpoint")]
    assert any(title.startswith("merged-lists") for title in quick["choices"])
    assert quick["value"] == studio.current_checkpoint()  # still the checkpoint the next job uses
    table = updates[ids.index("models_table")]
    assert "merged-lists" in [row[0] for row in table]
    assert 'data-checkpoint="merged-lists"' in updates[ids.index("txt2img_checkpoints_cards_html")]
    merger = updates[ids.index("modelmerger_primary_model_name")]
    assert merger["choices"][0] == "" and "value" not in merger  # the user's choice stays
    assert lists.fn("LoRA")[ids.index("models_table")] == gr.update()  # the table shows LoRAs: untouched


def test_every_page_load_and_focus_shows_the_folders_as_they_are(studio: Studio) -> None:
    demo = build_app(studio)
    ids_of = {fn: [getattr(block, "elem_id", None) for block in fn.outputs] for fn in demo.fns.values()}
    (load,) = [fn for fn, ids in ids_of.items() if "modelmerger_primary_model_name" in ids
               and any(event == "load" for _, event in fn.targets)]
    source = studio.context.paths.checkpoints / "tiny-sd15.safetensors"
    (source.parent / "copied.safetensors").write_bytes(source.read_bytes())  # added on disk, no 🔄
    ids = ids_of[load]
    updates = load.fn("Checkpoints")
    quick = updates[ids.index("setting_sd_model_checkpoint")]
    assert "copied.safetensors" in quick["choices"] and quick["value"] == studio.current_checkpoint()
    (focus,) = [fn for fn in demo.fns.values()
                if any(event == "focus" and demo.blocks[target].elem_id == "modelmerger_tertiary_model_name"
                       for target, event in fn.targets)]
    (source.parent / "copied.safetensors").unlink()
    assert "copied.safetensors" not in focus.fn()["choices"]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_theme_setting_is_applied_on_load_and_after_apply(studio: Studio, theme: str) -> None:
    demo = build_app(studio, theme=theme)
    page = Page(demo).load()
    assert page.values["theme"] == "system"
    js = [fn.js for fn in demo.fns.values() if fn.js and "aigenTheme" in fn.js]
    assert len(js) == 2 and all(f'"{theme}"' in code for code in js)  # --theme: the default while "system"
    page.apply(theme="dark")
    assert _config(studio)["theme"] == "dark"


def test_the_checkpoint_setting_takes_names_never_paths(studio: Studio) -> None:
    demo = build_app(studio)
    path = str(studio.context.paths.checkpoints / "tiny-sd15.safetensors")
    text = Page(demo).load().apply(sd_model_checkpoint=path, eta_ddim=0.25)
    assert "sd_model_checkpoint: names a file path" in text and "not changed" in text
    assert str(studio.context.paths.root) not in text
    config = _config(studio)
    assert config["sd_model_checkpoint"] == "" and config["eta_ddim"] == 0.25  # the rest of Apply still applies
    Page(demo).load().apply(sd_model_checkpoint="tiny-sd15")
    assert _config(studio)["sd_model_checkpoint"].startswith("tiny-sd15.safetensors [")
