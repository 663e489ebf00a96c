"""A real browser (Debian chromium, driven by Playwright) uses the page as a person would."""

from __future__ import annotations

import pytest

from tests.ui.browser_actions import generate_small, prepare_long_job, wait_for_progress
from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow


def test_generate_shows_the_image_and_its_seed(page) -> None:
    info = generate_small(page, "txt2img", "a small yellow star", 1234)
    assert "Steps: 3" in info and "Size: 64x64" in info
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "txt2img.png"), full_page=True)


def test_results_row_saves_and_sends_to_img2img(page) -> None:
    """Runs after the generation above: its image is in the gallery."""
    assert page.locator("#txt2img_open_folder").is_visible()  # a loopback server shows 📂
    page.locator("#save_txt2img").click()
    page.wait_for_function(
        "() => (document.querySelector('#html_log_txt2img') || {}).innerText?.includes('Saved: 00000-1234.png')",
        timeout=30_000,
    )
    page.locator("#txt2img_send_to_img2img").click()
    page.wait_for_selector("#img2img_image img", state="visible", timeout=30_000)
    assert page.locator("#img2img_prompt textarea").input_value() == "a small yellow star"
    page.screenshot(path=str(ARTIFACTS / "send-to-img2img.png"), full_page=True)
    page.get_by_role("tab", name="txt2img", exact=True).click()


def test_style_editor_saves_a_new_style(page) -> None:
    page.locator("#txt2img_styles_edit_button").click()
    page.wait_for_selector("#txt2img_styles_dialog", state="visible", timeout=30_000)
    name = page.locator("#txt2img_styles_edit_select input")
    name.fill("Browser style")
    name.press("Enter")
    page.locator("#txt2img_edit_style_prompt textarea").fill("{prompt}, watercolor")
    page.locator("#txt2img_edit_style_save").click()
    page.wait_for_function(
        "() => (document.querySelector('#txt2img_edit_style_status') || {}).innerText?.includes('Browser style')",
        timeout=30_000,
    )
    assert "Saved style" in page.locator("#txt2img_edit_style_status").inner_text()
    page.locator("#txt2img_edit_style_close").click()
    page.wait_for_selector("#txt2img_styles_dialog", state="hidden", timeout=30_000)


def test_interrupt_stops_a_long_job(page) -> None:
    prepare_long_job(page, batch_count=20)
    page.locator("#txt2img_generate").click()
    wait_for_progress(page, "step")
    page.locator("#txt2img_interrupt").click()
    wait_for_progress(page, "Interrupted")
    page.screenshot(path=str(ARTIFACTS / "txt2img-interrupted.png"), full_page=True)


def test_a_reloaded_page_restores_the_running_job(page) -> None:
    prepare_long_job(page, batch_count=4)
    page.locator("#txt2img_generate").click()
    wait_for_progress(page, "step")
    page.reload()
    wait_for_progress(page, "step")
    page.locator("#txt2img_interrupt").click()
    wait_for_progress(page, "Interrupted")

