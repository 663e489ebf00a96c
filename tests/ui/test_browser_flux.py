"""FLUX.1 in the browser, as a Forge user meets it: a transformer-only file in
models/Stable-diffusion, its VAE and text encoders in models/VAE and models/text_encoder, two
T5 files to choose between. The first job says which files to choose from; choosing one in the
"VAE / Text Encoder" quicksetting makes the next job run with it, recorded in the infotext.
Choosing an SD checkpoint beside it switches the forms to SD's defaults, and back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from safetensors.torch import save_file

from tests.families.flux.tiny_flux_install import install_tiny_flux
from tests.families.flux.tiny_flux_parts import t5_state, tiny_t5
from tests.ui.browser_actions import set_number
from tests.ui.conftest import ARTIFACTS, VIEWPORT
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow
MODULES = "#quicksettings #setting_forge_additional_modules"
QUICK_CHECKPOINT = "#quicksettings #setting_sd_model_checkpoint"


@pytest.fixture(scope="module")
def flux_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path) -> Iterator[str]:
    root = tmp_path_factory.mktemp("browser-flux")
    install_tiny_flux(root / "models", "bfl")  # flux1-dev sorts first: the default checkpoint
    for item in tiny_checkpoint_dir.glob("tiny-sd15*"):  # an SD1.x checkpoint to switch to
        (shutil.copytree if item.is_dir() else shutil.copy)(item, root / "models" / "Stable-diffusion" / item.name)
    save_file(t5_state(tiny_t5(5)), str(root / "models" / "text_encoder" / "t5xxl_other.safetensors"))
    yield from start_server(root, env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})


@pytest.fixture(scope="module")
def flux_page(browser, flux_server: str) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(flux_server)
    page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
    yield page
    context.close()


def _generate(page, seed: int) -> None:
    page.locator("#txt2img_prompt textarea").fill("a red fox in the snow")
    for name, value in (("steps", 3), ("width", 64), ("height", 64)):
        set_number(page, f"txt2img_{name}", value)
    page.locator("#txt2img_seed input").fill(str(seed))
    page.locator("#txt2img_generate").click()


def test_choosing_the_t5_file_in_the_quicksettings_makes_flux_run(flux_page, flux_server: str) -> None:
    page = flux_page
    # The page starts with FLUX's own defaults, not SD's DPM++ 2M at CFG 7 (real CFG, twice the time).
    assert page.locator("#txt2img_sampling input").input_value() == "Euler"
    assert page.locator("#txt2img_cfg_scale input[type=number]").input_value() == "1"
    assert page.locator(MODULES).is_visible()
    assert "VAE / Text Encoder" in page.locator(MODULES).inner_text()
    _generate(page, seed=21)
    # Two T5 files and none chosen: a readable message naming both, no image, no traceback.
    page.wait_for_function("() => (document.querySelector('#txt2img_progress') || {}).innerText"
                           "?.includes('t5xxl_other.safetensors')", timeout=90_000)
    message = page.locator("#txt2img_progress").inner_text()
    assert message.startswith("Failed: forge_additional_modules") and "t5xxl_fp16.safetensors" in message
    assert 'choose one in the "VAE / Text Encoder" selector' in message and "Traceback" not in message
    page.screenshot(path=str(ARTIFACTS / "flux_choose_parts_error.png"))

    box = page.locator(f"{MODULES} input")
    box.click()
    box.fill("t5xxl_fp16")
    page.get_by_role("option", name="t5xxl_fp16.safetensors").click()
    page.keyboard.press("Escape")
    page.wait_for_function("sel => document.querySelector(sel).innerText.includes('t5xxl_fp16.safetensors')",
                           arg=MODULES, timeout=10_000)
    page.wait_for_timeout(1000)  # the quicksetting is saved on change
    _generate(page, seed=22)
    page.wait_for_function("() => (document.querySelector('#txt2img_info textarea') || {}).value"
                           "?.includes('Seed: 22')", timeout=90_000)
    infotext = page.locator("#txt2img_info textarea").input_value()
    assert "Distilled CFG Scale: 3.5" in infotext and "Module 3: t5xxl_fp16" in infotext
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1," in infotext
    assert page.locator("#txt2img_gallery img").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "flux_generated.png"))


def _choose_checkpoint(page, name: str) -> None:
    box = page.locator(f"{QUICK_CHECKPOINT} input")
    box.click()
    box.fill(name)
    page.get_by_role("option", name=name).first.click()
    page.wait_for_function("([sel, name]) => document.querySelector(sel + ' input')?.value?.startsWith(name)",
                           arg=[QUICK_CHECKPOINT, name], timeout=10_000)


def _wait_for_form(page, tab: str, sampler: str, cfg: str, steps: str, size: str) -> None:
    """Wait until ``tab``'s form shows these values (set by the server after the change)."""
    shown = ("([tab]) => {"
             " const v = id => document.querySelector(`#${tab}_${id} input`)?.value;"
             " const n = id => document.querySelector(`#${tab}_${id} input[type=number]`)?.value;"
             " return [v('sampling'), n('cfg_scale'), n('steps'), n('width'), n('height')]; }")
    want = [sampler, cfg, steps, size, size]
    page.get_by_role("tab", name=tab, exact=True).click()  # a tab's controls render when it is shown
    try:
        page.wait_for_function(f"([tab, want]) => JSON.stringify(({shown})([tab])) === JSON.stringify(want)",
                               arg=[tab, want], timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(f"{tab} shows {page.evaluate(shown, [tab])}, expected {want}")


def test_choosing_a_checkpoint_of_another_family_switches_the_form_defaults(browser, flux_page,
                                                                           flux_server: str) -> None:
    page = flux_page
    _choose_checkpoint(page, "tiny-sd15")
    # SD1.x's A1111 defaults at the checkpoint's own size (the tiny fixture draws 64x64), in both tabs.
    for tab in ("txt2img", "img2img"):
        _wait_for_form(page, tab, "DPM++ 2M", "7", "20", "64")
    page.get_by_role("tab", name="txt2img", exact=True).click()
    assert page.locator("#txt2img_scheduler input").input_value() == "Automatic"
    page.screenshot(path=str(ARTIFACTS / "flux_switched_to_sd.png"), full_page=True)
    # A page built while FLUX.1 was current opens at the SD checkpoint's defaults too.
    other = browser.new_context(viewport=VIEWPORT).new_page()
    try:
        other.goto(flux_server)
        other.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        _wait_for_form(other, "txt2img", "DPM++ 2M", "7", "20", "64")
    finally:
        other.context.close()
    set_number(page, "txt2img_steps", 9)  # the user's own value; the next family change replaces it
    _choose_checkpoint(page, "flux1-dev")
    for tab in ("txt2img", "img2img"):
        _wait_for_form(page, tab, "Euler", "1", "20", "1024")
