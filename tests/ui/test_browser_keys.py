"""A1111's keys and the PNG drop in a real browser: Ctrl+Enter generates, Esc interrupts, and a
PNG dropped onto the prompt fills the tab from its infotext."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from modules.processing.output.image_formats import write_image
from tests.ui.browser_actions import prepare_long_job, set_number, wait_for_progress
from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

DROPPED = ("a lighthouse at dusk, dropped\nNegative prompt: fog, people\n"
           "Steps: 17, Sampler: Euler a, Schedule type: Karras, CFG scale: 9.5, Seed: 4242, Size: 96x128, "
           "Clip skip: 2, Version: v1.10.1")


def _png(infotext: str | None) -> bytes:
    handle = io.BytesIO()
    write_image(Image.new("RGB", (16, 16), (200, 80, 40)), handle, infotext)  # the studio's own PNG writer
    return handle.getvalue()


def _drop(page, selector: str, data: bytes, name: str, mime: str) -> None:
    """Drop a file onto ``selector`` as a person dragging it from the desktop does."""
    transfer = page.evaluate_handle(
        """([b64, name, mime]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )
    target = page.locator(selector)
    target.dispatch_event("dragover", {"dataTransfer": transfer})
    target.dispatch_event("drop", {"dataTransfer": transfer})


def _value(page, elem_id: str, kind: str = "input") -> str:
    return page.locator(f"#{elem_id} {kind}").first.input_value()


def test_ctrl_enter_in_the_prompt_generates(page) -> None:
    for name, value in (("steps", 3), ("width", 64), ("height", 64)):
        set_number(page, f"txt2img_{name}", value)
    page.locator("#txt2img_seed input").fill("777")
    prompt = page.locator("#txt2img_prompt textarea")
    prompt.fill("a small green triangle from the keyboard")
    prompt.press("Control+Enter")
    page.wait_for_function(
        "() => (document.querySelector('#txt2img_info textarea') || {}).value?.includes('Seed: 777')",
        timeout=90_000,
    )
    info = page.locator("#txt2img_info textarea").input_value()
    assert info.startswith("a small green triangle from the keyboard")
    assert page.locator("#txt2img_gallery img").count() >= 1
    assert prompt.input_value() == "a small green triangle from the keyboard"  # no newline typed
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "keys-ctrl-enter.png"), full_page=True)


def test_escape_interrupts_the_running_job(page) -> None:
    prepare_long_job(page, batch_count=20)
    page.locator("#txt2img_neg_prompt textarea").press("Control+Enter")
    wait_for_progress(page, "step")
    page.keyboard.press("Escape")
    wait_for_progress(page, "Interrupted")
    page.screenshot(path=str(ARTIFACTS / "keys-escape-interrupted.png"), full_page=True)
    set_number(page, "txt2img_batch_count", 1)


def test_escape_without_a_job_on_the_tab_interrupts_nothing(page) -> None:
    """Runs after the interrupted job: Esc must not stop a job another tab or person started."""
    page.evaluate("""() => {
        window.interruptPressed = false;
        for (const id of ['txt2img_interrupt', 'txt2img_skip']) {
            document.getElementById(id).addEventListener('click', () => { window.interruptPressed = true; });
        }
    }""")
    page.locator("#txt2img_prompt textarea").press("Escape")
    page.locator("#txt2img_prompt textarea").press("Alt+Enter")  # Skip, also only while a job runs
    assert page.evaluate("() => window.interruptPressed") is False
    page.evaluate("() => document.getElementById('txt2img_interrupt').click()")  # the listener itself works
    assert page.evaluate("() => window.interruptPressed") is True


def test_dropping_a_png_onto_the_prompt_fills_the_tab(page) -> None:
    _drop(page, "#txt2img_prompt textarea", _png(DROPPED), "lighthouse.png", "image/png")
    page.wait_for_function(
        "() => document.querySelector('#txt2img_prompt textarea').value.startsWith('a lighthouse at dusk')",
        timeout=30_000,
    )
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '4242'", timeout=30_000)
    assert _value(page, "txt2img_neg_prompt", "textarea") == "fog, people"
    assert _value(page, "txt2img_steps", "input[type=number]") == "17"
    assert _value(page, "txt2img_sampling") == "Euler a"
    assert _value(page, "txt2img_scheduler") == "Karras"
    assert _value(page, "txt2img_cfg_scale", "input[type=number]") == "9.5"
    assert (_value(page, "txt2img_width", "input[type=number]"),
            _value(page, "txt2img_height", "input[type=number]")) == ("96", "128")
    chips = page.locator("#txt2img_override_settings")
    chips.wait_for(state="visible", timeout=30_000)
    assert "Clip skip: 2" in chips.inner_text()
    page.screenshot(path=str(ARTIFACTS / "keys-png-drop.png"), full_page=True)


def test_the_pasted_clip_skip_applies_to_the_tabs_jobs_not_to_the_settings(page) -> None:
    """Runs after the drop above: its "Clip skip: 2" chip goes with the next job as an override."""
    set_number(page, "txt2img_steps", 3)
    page.locator("#txt2img_prompt textarea").press("Control+Enter")
    page.wait_for_function(
        "() => (document.querySelector('#txt2img_info textarea') || {}).value?.includes('Seed: 4242')",
        timeout=90_000,
    )
    info = page.locator("#txt2img_info textarea").input_value()
    assert "Clip skip: 2" in info and "Size: 96x128" in info and "Steps: 3" in info
    assert page.locator("#quicksettings #setting_CLIP_stop_at_last_layers input[type=number]").input_value() == "1"


def test_dropping_a_file_without_parameters_leaves_the_prompt(page) -> None:
    prompt = page.locator("#txt2img_prompt textarea")
    before = prompt.input_value()
    handle = io.BytesIO()
    Image.new("RGB", (8, 8)).save(handle, format="JPEG")
    _drop(page, "#txt2img_prompt textarea", handle.getvalue(), "photo.jpg", "image/jpeg")
    toast = page.locator(".toast-body", has_text="photo.jpg is not a PNG image")
    toast.wait_for(state="visible", timeout=30_000)
    _drop(page, "#txt2img_prompt textarea", _png(None), "plain.png", "image/png")
    page.locator(".toast-body", has_text="plain.png has no generation parameters").wait_for(
        state="visible", timeout=30_000)
    assert prompt.input_value() == before
    page.screenshot(path=str(ARTIFACTS / "keys-png-drop-refused.png"), full_page=True)


def test_dropping_a_png_onto_the_img2img_prompt_fills_img2img(page) -> None:
    page.get_by_role("tab", name="img2img", exact=True).click()
    _drop(page, "#img2img_neg_prompt textarea", _png(DROPPED), "lighthouse.png", "image/png")
    page.wait_for_function("() => document.querySelector('#img2img_seed input').value === '4242'", timeout=30_000)
    assert _value(page, "img2img_prompt", "textarea").startswith("a lighthouse at dusk")
    assert _value(page, "img2img_steps", "input[type=number]") == "17"
    assert _value(page, "img2img_sampling") == "Euler a"
    assert "Clip skip: 2" in page.locator("#img2img_override_settings").inner_text()
    page.screenshot(path=str(ARTIFACTS / "keys-png-drop-img2img.png"), full_page=True)
    page.get_by_role("tab", name="txt2img", exact=True).click()


def test_png_info_send_to_txt2img_fills_the_same_controls(page, tmp_path) -> None:
    """The drop and PNG Info's "Send to txt2img" share one paste path: the same fields land."""
    path = tmp_path / "sent.png"
    path.write_bytes(_png(DROPPED.replace("Seed: 4242", "Seed: 5151").replace("Clip skip: 2", "Clip skip: 3")))
    page.get_by_role("tab", name="PNG Info", exact=True).click()
    page.locator("#pnginfo_image input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "() => (document.querySelector('#pnginfo_generation_info textarea') || {}).value?.includes('Seed: 5151')",
        timeout=30_000,
    )
    page.locator("#pnginfo_send_txt2img").click()
    page.wait_for_function("() => document.querySelector('#txt2img_seed input').value === '5151'", timeout=30_000)
    assert _value(page, "txt2img_steps", "input[type=number]") == "17"
    assert "Clip skip: 3" in page.locator("#txt2img_override_settings").inner_text()
    page.screenshot(path=str(ARTIFACTS / "keys-pnginfo-send.png"), full_page=True)
