"""The extra-networks cards: what a card shows, what a click adds to the prompt, what the page's
search and sort read, and the checkpoint click's wiring to the quicksettings dropdown."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image

from modules.models.catalog import ModelEntry, list_models
from modules.models.hashing import HashCache
from modules.studio import Studio
from modules.ui.app import build_app
from modules.ui.extra_networks import (
    PreviewThumbnails,
    cards_html,
    checkpoint_cards,
    controls_html,
    lora_prompt,
    network_cards,
    page_html,
)
from tests.network_files import write_embedding, write_lora
from tests.studio_fixtures import data_dir, studio  # noqa: F401  (fixtures)

_TENSORS = {"lora_unet_x.lora_down.weight": torch.zeros(1, 4)}


def _no_preview(path: Path) -> str | None:
    raise AssertionError(f"no preview was expected, got {path}")


def _entry(name: str, **fields) -> ModelEntry:
    return ModelEntry("lora", name, Path(f"/models/Lora/{name}.safetensors"), 10, 1_700_000_000.4, **fields)


def test_lora_card_adds_the_tag_with_the_default_multiplier() -> None:
    (card,) = network_cards("lora", [_entry("ink")], 1.0, _no_preview)
    assert card.prompt == "<lora:ink:1>"
    (card,) = network_cards("lora", [_entry("ink")], 0.5, _no_preview)
    assert card.prompt == "<lora:ink:0.5>"


def test_lora_card_uses_the_notes_weight_activation_and_negative_text() -> None:
    notes = {"preferred weight": "0.8", "activation text": "inkstyle, bold", "negative text": "blurry"}
    (card,) = network_cards("lora", [_entry("ink", user_metadata=notes)], 1.0, _no_preview)
    assert card.prompt == "<lora:ink:0.8> inkstyle, bold"
    assert card.negative_prompt == "(blurry:1)"
    assert lora_prompt("ink", 1.25) == "<lora:ink:1.25>"


def test_a_lora_whose_file_name_repeats_is_named_by_its_path() -> None:
    entries = [_entry("ink"), ModelEntry("lora", "old/ink", Path("/models/Lora/old/ink.safetensors"), 1, 0.0)]
    assert [c.prompt for c in network_cards("lora", entries, 1.0, _no_preview)] == ["<lora:ink:1>",
                                                                                  "<lora:old/ink:1>"]


def test_embedding_card_adds_its_file_name() -> None:
    entry = ModelEntry("embeddings", "neg/bad_hands", Path("/e/neg/bad_hands.pt"), 1, 0.0)
    (card,) = network_cards("textual_inversion", [entry], 1.0, _no_preview)
    assert card.prompt == "bad_hands" and card.negative_prompt == ""


def test_names_notes_and_prompts_are_escaped() -> None:
    hostile = '<img src=x onerror="alert(1)">&'
    entry = _entry(hostile, user_metadata={"description": "<b>bold</b>", "notes": "a < b", "activation text": '"q"'})
    page = cards_html("txt2img", "lora", network_cards("lora", [entry], 1.0, _no_preview), " ")
    assert "<img src=x" not in page and "<b>bold" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "Notes: a &lt; b" in page
    assert 'data-prompt="&lt;lora:&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;:1&gt; &quot;q&quot;"' in page


def test_card_shows_trigger_words_notes_and_the_search_and_sort_data() -> None:
    entry = _entry("Ink_Style", trained_words=("ink", "lines"), user_metadata={"description": "Thick Lines",
                                                                               "notes": "best at 0.8"})
    (card,) = network_cards("lora", [entry], 1.0, _no_preview)
    page = cards_html("img2img", "lora", [card], ", ")
    assert card.trigger_words == "ink, lines"
    assert "Trigger words: ink, lines" in page and "Notes: best at 0.8" in page and "Thick Lines" in page
    assert 'data-name="ink_style"' in page and 'data-date="1700000000"' in page
    assert 'data-search="ink_style ink, lines thick lines best at 0.8"' in page
    assert 'data-tab="img2img"' in page and 'data-separator=", "' in page
    assert 'data-controls="img2img_lora_controls"' in page
    assert 'id="img2img_lora_controls"' in controls_html("img2img", "lora")
    assert 'class="aigen-card-preview aigen-card-placeholder"' in page  # no preview file


def test_previews_beside_the_file_become_thumbnails(tmp_path: Path) -> None:
    folder = tmp_path / "Lora"
    write_lora(folder / "ink.safetensors", _TENSORS)
    write_lora(folder / "plain.safetensors", _TENSORS)
    Image.new("RGB", (600, 900), (200, 80, 40)).save(folder / "ink.preview.png")
    entries = list_models("lora", [folder], HashCache(tmp_path / "hashes.json"))
    assert [e.preview.name if e.preview else None for e in entries] == ["ink.preview.png", None]
    thumbnails = PreviewThumbnails(side=64)
    ink, plain = network_cards("lora", entries, 1.0, thumbnails)
    assert ink.preview.startswith("data:image/webp;base64,") and plain.preview is None
    assert thumbnails(folder / "ink.preview.png") is ink.preview  # kept while the file is unchanged
    (folder / "broken.png").write_bytes(b"not an image")
    assert thumbnails(folder / "broken.png") is None
    page = cards_html("txt2img", "lora", [ink, plain], " ")
    assert page.count('<img class="aigen-card-preview"') == 1 and page.count("aigen-card-placeholder") == 1


def test_checkpoint_cards_select_by_name_and_mark_the_current_one() -> None:
    entries = [ModelEntry("checkpoints", name, Path(f"/c/{name}.safetensors"), 1, 0.0) for name in ("a", "b")]
    page = cards_html("txt2img", "checkpoints", checkpoint_cards(entries, "b", _no_preview), " ")
    assert 'data-checkpoint="a"' in page and "data-prompt" not in page
    assert page.count("aigen-card-selected") == 1 and page.index("aigen-card-selected") > page.index('"a"')


def test_an_empty_page_says_where_the_files_go() -> None:
    page = cards_html("txt2img", "lora", [], " ", [Path("/data/models/Lora")])
    assert "Nothing here" in page and "/data/models/Lora" in page


def test_pages_list_the_studio_folders_as_they_are_now(studio: Studio) -> None:  # noqa: F811
    paths = studio.context.paths
    write_lora(paths.lora / "ink.safetensors", _TENSORS)
    (paths.lora / "ink.json").write_text(json.dumps({"activation text": "inkstyle"}), encoding="utf-8")
    write_embedding(paths.embeddings / "bad_hands.safetensors", (32,))
    thumbnails = PreviewThumbnails()
    assert 'data-prompt="&lt;lora:ink:1&gt; inkstyle"' in page_html(studio, "txt2img", "lora", thumbnails)
    assert 'data-prompt="bad_hands"' in page_html(studio, "txt2img", "textual_inversion", thumbnails)
    checkpoints = page_html(studio, "txt2img", "checkpoints", thumbnails)
    assert 'data-checkpoint="tiny-sd15"' in checkpoints and "aigen-card-selected" in checkpoints
    studio.store.set_extra({"extra_networks_default_multiplier": 0.7, "extra_networks_add_text_separator": ", "})
    lora_page = page_html(studio, "txt2img", "lora", thumbnails)
    assert "&lt;lora:ink:0.7&gt;" in lora_page and 'data-separator=", "' in lora_page
    os.utime(paths.lora / "ink.safetensors", (1_600_000_000, 1_600_000_000))
    assert 'data-date="1600000000"' in page_html(studio, "txt2img", "lora", thumbnails)


def test_a_checkpoint_card_click_sets_the_checkpoint_and_the_dropdown(studio: Studio) -> None:  # noqa: F811
    demo = build_app(studio)
    ids = {block._id: block for block in demo.blocks.values()}
    (handler,) = [fn for fn in demo.fns.values()
                  if any(getattr(ids.get(target), "elem_id", "") == "txt2img_checkpoints_cards_html"
                         for target, _ in fn.targets)]
    assert [block.elem_id for block in handler.outputs] == ["txt2img_checkpoints_cards_html"]
    cards = handler.fn(gr.EventData(None, {"checkpoint": "tiny-sd15"}))
    assert studio.settings.sd_model_checkpoint.startswith("tiny-sd15.safetensors [")
    assert "aigen-card-selected" in cards
    # Then every checkpoint list, the quicksettings dropdown among them, shows the choice.
    (lists,) = [fn for fn in demo.fns.values() if fn.trigger_after == handler._id
                and "setting_sd_model_checkpoint" in [b.elem_id for b in fn.outputs]]
    dropdown = lists.fn("Checkpoints")[[b.elem_id for b in lists.outputs].index("setting_sd_model_checkpoint")]
    assert dropdown["value"] == studio.settings.sd_model_checkpoint and dropdown["value"] in dropdown["choices"]
    with pytest.raises(gr.Error, match="No checkpoint named 'gone'"):
        handler.fn(gr.EventData(None, {"checkpoint": "gone"}))
