"""The extra-networks card browser in a real browser: search, a click on a Lora or embedding
card writes into the prompt (and gradio sees it), Refresh finds a new file, a checkpoint card
switches the quicksettings checkpoint; and the prompt and size rows' layout at 1280 px."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.network_files import write_embedding, write_lora
from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

# Names no other test reads; the files are removed again at the end of the module.
LORA, LATE_LORA, OTHER_LORA = "en_browser_ink", "en_browser_late", "en_browser_plain"
EMBEDDING = "en_browser_badhands"
SECOND_CHECKPOINT = "en-browser-second"
_TENSORS = {"lora_unet_x.lora_down.weight": torch.zeros(1, 4)}


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def model_folders(browser_data_dir: Path) -> Iterator[Path]:
    """A Lora with a preview and notes, one without, and an embedding in the shared server's folders."""
    models = browser_data_dir / "models"
    lora = models / "Lora"
    made = [write_lora(lora / f"{LORA}.safetensors", _TENSORS),
            write_lora(lora / f"{OTHER_LORA}.safetensors", _TENSORS),
            write_embedding(models / "embeddings" / f"{EMBEDDING}.safetensors", (32,))]
    Image.new("RGB", (96, 144), (200, 80, 40)).save(lora / f"{LORA}.preview.png")
    (lora / f"{LORA}.json").write_text(json.dumps({"activation text": "inkstyle", "notes": "best at 0.8"}), "utf-8")
    made += [lora / f"{LORA}.preview.png", lora / f"{LORA}.json", lora / f"{LATE_LORA}.safetensors",
             models / "Stable-diffusion" / f"{SECOND_CHECKPOINT}.safetensors",
             models / "Stable-diffusion" / f"{SECOND_CHECKPOINT}.config"]
    yield models
    _remove(made)


def _open_cards(page, tab: str, page_id: str) -> None:
    """Open the card browser (if closed) and its page; wait for the page's cards."""
    if not page.locator(f"#{tab}_extra_tabs").is_visible():
        page.locator(f"#{tab}_extra_networks > .label-wrap").click()
    page.locator(f"#{tab}_{page_id}-button").click()
    page.wait_for_selector(f"#{tab}_{page_id}_cards_html .aigen-cards", state="visible", timeout=30_000)


def _card(page, tab: str, page_id: str, name: str):
    return page.locator(f'#{tab}_{page_id}_cards_html .aigen-card[data-name="{name}"]')


def _counter(page) -> str:
    return page.locator("#txt2img_token_counter").inner_text()


def test_lora_cards_search_and_click_into_the_prompt(page, model_folders: Path) -> None:
    _open_cards(page, "txt2img", "lora")
    ink = _card(page, "txt2img", "lora", LORA)
    ink.wait_for(state="visible", timeout=30_000)
    assert ink.locator("img.aigen-card-preview").get_attribute("src").startswith("data:image/webp;base64,")
    assert "Trigger words: inkstyle" in ink.inner_text() and "Notes: best at 0.8" in ink.inner_text()
    other = _card(page, "txt2img", "lora", OTHER_LORA)
    assert other.locator(".aigen-card-placeholder").is_visible()

    page.locator("#txt2img_lora_extra_search").fill("ink")
    assert other.is_hidden() and ink.is_visible()
    page.locator("#txt2img_lora_extra_search").fill("")
    assert other.is_visible()

    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a cat")
    page.wait_for_function("() => document.querySelector('#txt2img_token_counter').innerText !== '0/75'",
                           timeout=30_000)
    before = _counter(page)
    ink.click()
    assert prompt.input_value() == f"a cat <lora:{LORA}:1> inkstyle"
    # gradio saw the change: the token counter (a server event on the box's change) moved on.
    page.wait_for_function("before => document.querySelector('#txt2img_token_counter').innerText !== before",
                           arg=before, timeout=30_000)
    ink.click()  # a second click takes it out again, as in A1111
    assert prompt.input_value() == "a cat"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "extra-networks-lora.png"), full_page=True)


def test_sort_by_name_descending_reverses_the_cards(page, model_folders: Path) -> None:
    _open_cards(page, "txt2img", "lora")
    names = "() => [...document.querySelectorAll('#txt2img_lora_cards_html .aigen-card')].map(c => c.dataset.name)"
    ascending = page.evaluate(names)
    page.locator("#txt2img_lora_extra_sort_dir").click()
    assert page.evaluate(names) == list(reversed(ascending)) and len(ascending) >= 2
    page.locator("#txt2img_lora_extra_sort_dir").click()
    assert page.evaluate(names) == ascending


def test_embedding_card_adds_its_name(page, model_folders: Path) -> None:
    _open_cards(page, "txt2img", "textual_inversion")
    page.locator("#txt2img_prompt textarea").fill("a dog")
    _card(page, "txt2img", "textual_inversion", EMBEDDING).click()
    assert page.locator("#txt2img_prompt textarea").input_value() == f"a dog {EMBEDDING}"


def test_img2img_cards_write_into_the_img2img_prompt(page, model_folders: Path) -> None:
    page.get_by_role("tab", name="img2img", exact=True).click()
    _open_cards(page, "img2img", "lora")
    page.locator("#img2img_prompt textarea").fill("a fox")
    _card(page, "img2img", "lora", OTHER_LORA).click()
    assert page.locator("#img2img_prompt textarea").input_value() == f"a fox <lora:{OTHER_LORA}:1>"
    page.get_by_role("tab", name="txt2img", exact=True).click()


def test_refresh_shows_a_lora_added_since(page, model_folders: Path) -> None:
    _open_cards(page, "txt2img", "lora")
    late = _card(page, "txt2img", "lora", LATE_LORA)
    assert late.count() == 0
    write_lora(model_folders / "Lora" / f"{LATE_LORA}.safetensors", _TENSORS)
    page.locator("#txt2img_lora_extra_refresh").click()
    late.wait_for(state="visible", timeout=30_000)
    late.click()
    assert f"<lora:{LATE_LORA}:1>" in page.locator("#txt2img_prompt textarea").input_value()


def _quicksetting_checkpoint(page) -> str:
    return page.locator("#setting_sd_model_checkpoint input").input_value()


def _choose_checkpoint(page, name: str) -> None:
    _card(page, "txt2img", "checkpoints", name).click()
    page.wait_for_function(
        "name => (document.querySelector('#setting_sd_model_checkpoint input') || {}).value?.startsWith(name)",
        arg=name, timeout=60_000)
    page.wait_for_selector(f'#txt2img_checkpoints_cards_html .aigen-card-selected[data-name="{name}"]',
                           timeout=30_000)


def test_checkpoint_card_sets_the_quicksettings_checkpoint(page, model_folders: Path) -> None:
    folder = model_folders / "Stable-diffusion"
    shutil.copy(folder / "tiny-sd15.safetensors", folder / f"{SECOND_CHECKPOINT}.safetensors")
    shutil.copytree(folder / "tiny-sd15.config", folder / f"{SECOND_CHECKPOINT}.config")
    _open_cards(page, "txt2img", "checkpoints")
    page.locator("#txt2img_checkpoints_extra_refresh").click()
    _card(page, "txt2img", "checkpoints", SECOND_CHECKPOINT).wait_for(state="visible", timeout=30_000)
    _choose_checkpoint(page, SECOND_CHECKPOINT)
    assert _quicksetting_checkpoint(page).startswith(f"{SECOND_CHECKPOINT}.safetensors")
    page.screenshot(path=str(ARTIFACTS / "extra-networks-checkpoints.png"), full_page=True)
    _choose_checkpoint(page, "tiny-sd15")  # put the shared server back on its checkpoint
    assert _quicksetting_checkpoint(page).startswith("tiny-sd15.safetensors")
    _remove([folder / f"{SECOND_CHECKPOINT}.safetensors", folder / f"{SECOND_CHECKPOINT}.config"])
    page.locator("#txt2img_checkpoints_extra_refresh").click()  # the server forgets it again
    _card(page, "txt2img", "checkpoints", SECOND_CHECKPOINT).wait_for(state="detached", timeout=30_000)


_LABELS = """() => ['width', 'height', 'batch_count', 'batch_size', 'steps'].map(name => {
  const block = document.getElementById('txt2img_' + name);
  const label = block.querySelector('label'), text = label.querySelector('span');
  const box = block.querySelector('input[type=number]').getBoundingClientRect();
  const words = text.getBoundingClientRect();
  return {name, overflow: label.scrollWidth - label.clientWidth, lines: Math.round(words.height /
          parseFloat(getComputedStyle(text).lineHeight)), room: box.left - words.right};
})"""
# The left column under the prompt, top to bottom, and the next full-width row.
_GAPS = """() => {
  const ids = ['txt2img_prompt', 'txt2img_token_counter', 'txt2img_neg_prompt', 'txt2img_negative_token_counter',
               'txt2img_extra_networks'];
  const boxes = ids.map(id => document.getElementById(id).getBoundingClientRect());
  return {gaps: boxes.slice(1).map((box, i) => Math.round(box.top - boxes[i].bottom)),
          preview_button: document.getElementById('txt2img_prompt_preview').getBoundingClientRect().height};
}"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_size_labels_fit_and_no_empty_band_under_the_prompt(open_page, model_folders: Path, width: int) -> None:
    page = open_page(viewport={"width": width, "height": 1000})
    for label in page.evaluate(_LABELS):
        assert label["overflow"] <= 0 and label["lines"] == 1 and label["room"] >= 0, label
    layout = page.evaluate(_GAPS)
    assert max(layout["gaps"]) <= 40, layout  # was a 117 px band: the squeezed 🔍 button wrapped
    assert layout["preview_button"] <= 48, layout
    _open_cards(page, "txt2img", "lora")
    page.screenshot(path=str(ARTIFACTS / f"extra-networks-txt2img-{width}.png"), full_page=True)
