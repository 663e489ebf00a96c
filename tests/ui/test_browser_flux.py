"""FLUX.1 in the browser, as a Forge user meets it: a transformer-only file in
models/Stable-diffusion, its VAE and text encoders in models/VAE and models/text_encoder, two
T5 files to choose between. The first job says which files to choose from; choosing one in the
"VAE / Text Encoder" quicksetting makes the next job run with it, recorded in the infotext."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from safetensors.torch import save_file

from tests.families.flux.tiny_flux_install import install_tiny_flux
from tests.families.flux.tiny_flux_parts import t5_state, tiny_t5
from tests.ui.browser_actions import set_number
from tests.ui.conftest import ARTIFACTS, VIEWPORT
from tests.ui.live_server import start_server

pytestmark = pytest.mark.slow
MODULES = "#quicksettings #setting_forge_additional_modules"


@pytest.fixture(scope="module")
def flux_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("browser-flux")
    install_tiny_flux(root / "models", "bfl")
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
