"""Issue 19.8 in a real browser: 🔍 shows the prompt plan as tables, a ControlNet unit with no
model installed says where models go, and 📂 on a server without a desktop says where the
folder is (the shared test server runs without one, whatever the machine has: see conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

PLAN = "#txt2img_prompt_plan"


def _shot(page, name: str, selector: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = page.locator(selector).first if selector else page
    target.screenshot(path=str(ARTIFACTS / name))


def test_prompt_preview_is_a_readable_table(page) -> None:
    page.locator("#txt2img_prompt textarea").fill("a [red:blue:0.5] cat AND (snow:1.3) sky <lora:film:0.8>")
    page.locator("#txt2img_neg_prompt textarea").fill("blurry")
    page.locator("#txt2img_steps input[type=number]").fill("20")
    page.locator("#txt2img_steps input[type=number]").press("Enter")
    page.locator("#txt2img_prompt_preview").click()
    page.wait_for_selector(f"{PLAN} table", state="visible", timeout=30_000)
    text = page.locator(PLAN).inner_text()
    assert "{" not in text and '"sub_prompts"' not in text  # tables, not JSON
    headers = page.locator(f"{PLAN} table").first.locator("th").all_inner_texts()
    assert [h.strip() for h in headers] == ["Steps", "Text", "Tokens", "Emphasis"]
    first_rows = page.locator(f"{PLAN} table").first.locator("tbody tr").all_inner_texts()
    assert first_rows[0].split("\t")[:3] == ["1–10", "a red cat", "3/75"]
    assert first_rows[1].split("\t")[:2] == ["11–20", "a blue cat"]
    assert "snow ×1.3" in text and "film" in text and "LoRA not found" in text
    assert "Negative prompt" in text and "blurry" in text
    _shot(page, "prompt-plan.png", PLAN)


def test_controlnet_without_models_says_where_they_go(page) -> None:
    page.locator("#script_txt2img_controlnet").get_by_text("ControlNet", exact=True).first.click()
    model = page.locator("#script_txt2img_controlnet_unit_0_model")
    model.wait_for(state="visible", timeout=30_000)
    text = model.inner_text()
    assert "No ControlNet model installed" in text and "models/ControlNet" in text
    model.scroll_into_view_if_needed()
    _shot(page, "controlnet-no-model.png", "#script_txt2img_controlnet")


def test_open_folder_on_a_headless_server_says_where_the_folder_is(page, browser_data_dir: Path) -> None:
    button = page.locator("#txt2img_open_folder")
    assert button.is_visible()  # a loopback server shows 📂
    button.click()
    page.wait_for_function(
        "() => (document.querySelector('#html_log_txt2img') || {}).innerText?.includes('files are in')",
        timeout=30_000,
    )
    message = page.locator("#html_log_txt2img").inner_text()
    assert "without a desktop" in message
    assert browser_data_dir.name in message and "txt2img-images" in message
    page.locator("#html_log_txt2img").scroll_into_view_if_needed()
    _shot(page, "open-folder-headless.png")
