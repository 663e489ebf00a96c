"""A real browser (Debian chromium, driven by Playwright) uses the page as a person would."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny_models import write_tiny_checkpoint
from tests.ui.live_server import REPO_ROOT, start_server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("browser-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    yield from start_server(root)


@pytest.fixture(scope="module")
def page(server: str):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(server)
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        yield page
        browser.close()


def _set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def _set_large_size(page) -> None:
    """512x512 keeps a long job running for seconds; the default is the tiny model's native 64."""
    _set_number(page, "txt2img_width", 512)
    _set_number(page, "txt2img_height", 512)


def _wait_for_progress(page, text: str) -> None:
    """Wait until the progress line contains ``text`` (queue position, "step", "Interrupted")."""
    page.wait_for_function(
        "text => (document.querySelector('#txt2img_progress') || {}).innerText?.includes(text)",
        arg=text, timeout=60_000,
    )


def _generate_small(page, tab: str, prompt: str, seed: int) -> str:
    """Fill the prompt, 3 steps at 64x64 and ``seed`` in ``tab``, generate, and return the info text."""
    page.locator(f"#{tab}_prompt textarea").fill(prompt)
    for name, value in (("steps", 3), ("width", 64), ("height", 64)):
        _set_number(page, f"{tab}_{name}", value)
    page.locator(f"#{tab}_seed input").fill(str(seed))
    page.locator(f"#{tab}_generate").click()
    page.wait_for_selector(f"#{tab}_gallery img", timeout=90_000)
    page.wait_for_function(
        "([tab, seed]) => (document.querySelector(`#${tab}_info textarea`) || {}).value?.includes(`Seed: ${seed}`)",
        arg=[tab, seed], timeout=30_000,
    )
    return page.locator(f"#{tab}_info textarea").input_value()


def test_generate_shows_the_image_and_its_seed(page) -> None:
    info = _generate_small(page, "txt2img", "a small yellow star", 1234)
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
    _set_number(page, "txt2img_steps", 150)
    _set_number(page, "txt2img_batch_count", 20)
    _set_large_size(page)
    page.locator("#txt2img_generate").click()
    _wait_for_progress(page, "step")
    page.locator("#txt2img_interrupt").click()
    _wait_for_progress(page, "Interrupted")
    page.screenshot(path=str(ARTIFACTS / "txt2img-interrupted.png"), full_page=True)


def test_a_reloaded_page_restores_the_running_job(page) -> None:
    _set_number(page, "txt2img_steps", 150)
    _set_number(page, "txt2img_batch_count", 4)
    _set_large_size(page)
    page.locator("#txt2img_generate").click()
    _wait_for_progress(page, "step")
    page.reload()
    _wait_for_progress(page, "step")
    page.locator("#txt2img_interrupt").click()
    _wait_for_progress(page, "Interrupted")


def test_inpaint_a_drawn_mask_stroke(page, tmp_path: Path) -> None:
    """Upload into the Inpaint editor, paint a stroke with the mouse, generate: the stroke is the mask."""
    from PIL import Image

    source = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(source)
    page.get_by_role("tab", name="img2img", exact=True).click()
    page.get_by_role("tab", name="Inpaint", exact=True).click()
    page.locator("#img2maskimg input[type=file]").first.set_input_files(str(source))
    page.wait_for_selector("#img2img_inpaint_controls", state="visible", timeout=30_000)
    page.locator("#img2maskimg button[aria-label='Brush']").click()
    canvas = page.locator("#img2maskimg canvas").last
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.04 * step), y, steps=2)
    page.mouse.up()
    info = _generate_small(page, "img2img", "a red circle", 77)
    assert "Mask mode: Inpaint masked" in info and "Denoising strength: 0.75" in info
    assert "mask is empty" not in info  # the painted stroke arrived as the mask
    page.screenshot(path=str(ARTIFACTS / "img2img-inpaint.png"), full_page=True)
