"""The results gallery in a real browser (issue 19.3 and 19.6): every image shown whole, A1111's
full-size view on click, a batch's grid first, the clicked image's infotext alone, and an
interrupted or empty job that never loses what the gallery showed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.ui.browser_actions import prepare_long_job, set_number, wait_for_progress
from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

GALLERY = "#txt2img_gallery"
LARGE_IMAGE = f"{GALLERY} button.media-button img"
THUMBNAILS = f"{GALLERY} .thumbnails button"
INFO = "#txt2img_info textarea"


def _generate(page, seed: int, width: int = 64, height: int = 64, batch_size: int = 1) -> str:
    """3 steps of "a striped kite" at ``width`` x ``height``; returns the info text once it names ``seed``."""
    page.locator("#txt2img_prompt textarea").fill("a striped kite")
    for name, value in (("steps", 3), ("width", width), ("height", height), ("batch_size", batch_size),
                        ("batch_count", 1)):
        set_number(page, f"txt2img_{name}", value)
    page.locator("#txt2img_seed input").fill(str(seed))
    page.locator("#txt2img_generate").click()
    _wait_for_info(page, f"Seed: {seed},")
    page.wait_for_selector(LARGE_IMAGE, timeout=30_000)
    page.wait_for_function("sel => document.querySelector(sel)?.complete", arg=LARGE_IMAGE, timeout=30_000)
    return page.locator(INFO).input_value()


def _wait_for_info(page, text: str) -> None:
    page.wait_for_function("([sel, text]) => document.querySelector(sel)?.value?.includes(text)",
                           arg=[INFO, text], timeout=120_000)


def _image_box(page, selector: str) -> dict[str, Any]:
    """The image's natural size, its box on the page, its object-fit, and the gallery's box."""
    return page.evaluate(
        """([sel, gallery]) => {
            const img = document.querySelector(sel), r = img.getBoundingClientRect();
            const g = document.querySelector(gallery).getBoundingClientRect();
            return {natural: [img.naturalWidth, img.naturalHeight], box: [r.x, r.y, r.width, r.height],
                    fit: getComputedStyle(img).objectFit, gallery: [g.x, g.y, g.width, g.height]};
        }""", [selector, GALLERY])


def _shows_whole(shown: dict[str, Any]) -> bool:
    """Whether the image's pixels all fit its box (contain) and the box lies inside the gallery."""
    (nat_w, nat_h), (x, y, w, h), (gx, gy, gw, gh) = shown["natural"], shown["box"], shown["gallery"]
    scale = min(w / nat_w, h / nat_h)  # what contain draws; cover would use max and cut the rest
    inside = x >= gx - 1 and y >= gy - 1 and x + w <= gx + gw + 1 and y + h <= gy + gh + 1
    return shown["fit"] == "contain" and nat_w * scale <= w + 0.5 and nat_h * scale <= h + 0.5 and inside


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_a_single_wide_image_is_shown_whole(page) -> None:
    info = _generate(page, 500, width=192, height=64)
    assert "Size: 192x64" in info
    large = _image_box(page, LARGE_IMAGE)
    assert large["natural"] == [192, 64]
    assert _shows_whole(large), large
    # Shown as big as the gallery allows, not as a small thumbnail.
    assert large["box"][2] > 0.8 * large["gallery"][2]
    thumbnail = _image_box(page, f"{THUMBNAILS} img")
    assert thumbnail["fit"] == "contain", thumbnail  # gradio's strip would crop it to a square
    _shot(page, "gallery-single-wide.png")


def test_clicking_the_image_opens_it_full_size(page) -> None:
    page.locator(LARGE_IMAGE).click()
    page.wait_for_selector("#lightboxModal", state="visible", timeout=10_000)
    shown = page.evaluate("""() => { const i = document.querySelector('#modalImage'), r = i.getBoundingClientRect();
                                     return [i.naturalWidth, i.naturalHeight, r.width, r.height]; }""")
    assert shown == [192, 64, 192, 64]  # every pixel, unscaled
    _shot(page, "gallery-lightbox.png")
    page.locator("#modalImage").click()  # A1111's zoom toggle: fitted to the window
    fitted = page.evaluate("() => document.querySelector('#modalImage').getBoundingClientRect().width")
    assert fitted > 192
    page.keyboard.press("Escape")
    page.wait_for_selector("#lightboxModal", state="hidden", timeout=10_000)
    assert _image_box(page, LARGE_IMAGE)["natural"] == [192, 64]  # still the same result


def test_a_batch_shows_its_grid_first(page) -> None:
    info = _generate(page, 700, batch_size=2)
    assert info.count("Steps:") == 1 and "Seed: 700," in info  # the first image's infotext only
    assert page.locator(THUMBNAILS).count() == 3
    grid = _image_box(page, LARGE_IMAGE)
    assert grid["natural"] == [128, 64]  # A1111's layout: round(sqrt(2)) = 1 row of 2
    assert _shows_whole(grid), grid
    assert page.locator(f"{GALLERY} .caption").inner_text() == "Grid"
    _shot(page, "gallery-batch-grid.png")


def test_clicking_an_image_shows_its_infotext_alone(page) -> None:
    page.locator(THUMBNAILS).nth(2).click()  # the batch's second image
    _wait_for_info(page, "Seed: 701,")
    info = page.locator(INFO).input_value()
    assert info.count("Steps:") == 1 and "Seed: 700," not in info
    page.locator(THUMBNAILS).nth(0).click()  # the grid: the first image's infotext
    _wait_for_info(page, "Seed: 700,")
    assert page.locator(INFO).input_value().count("Steps:") == 1
    _shot(page, "gallery-clicked-info.png")


def test_interrupt_keeps_the_partly_denoised_image(page) -> None:
    page.locator("#txt2img_seed input").fill("900")
    set_number(page, "txt2img_batch_size", 1)
    prepare_long_job(page)
    page.locator("#txt2img_generate").click()
    wait_for_progress(page, "step")
    page.locator("#txt2img_interrupt").click()
    wait_for_progress(page, "Interrupted")
    _wait_for_info(page, "Seed: 900,")
    assert "Size: 512x512" in page.locator(INFO).input_value()
    page.wait_for_function("sel => document.querySelector(sel)?.naturalWidth === 512", arg=LARGE_IMAGE,
                           timeout=30_000)
    assert page.locator(THUMBNAILS).count() == 1
    _shot(page, "gallery-interrupted.png")


def test_a_job_that_makes_nothing_keeps_the_previous_gallery(page, open_page) -> None:
    """A job interrupted before its first step (here: still waiting behind another tab's job)."""
    info = _generate(page, 1000)
    other = open_page()
    other.locator("#txt2img_prompt textarea").fill("a long job")
    prepare_long_job(other)
    other.locator("#txt2img_generate").click()
    wait_for_progress(other, "step")
    page.locator("#txt2img_seed input").fill("1001")
    page.locator("#txt2img_generate").click()
    wait_for_progress(page, "Waiting in queue")
    page.locator("#txt2img_interrupt").click()
    wait_for_progress(page, "Cancelled")
    other.locator("#txt2img_interrupt").click()
    wait_for_progress(other, "Interrupted")
    assert page.locator(INFO).input_value() == info
    assert page.locator(THUMBNAILS).count() == 1
    assert _image_box(page, LARGE_IMAGE)["natural"] == [64, 64]
    assert re.search(r"Seed 1000", page.locator(f"{GALLERY} .caption").inner_text())
    _shot(page, "gallery-kept-after-cancel.png")
