"""The Settings tab and the checkpoint lists in a real browser (issue 19.1, 19.4, 19.10): a reload
shows what config.json holds, a page loaded before someone else's Apply reverts nothing, the
quicksettings checkpoint is the one the next job uses, a merge shows in the quicksettings list
without 🔄, and the Theme setting makes the page dark. Every setting changed is put back."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.browser_actions import set_number
from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

#: What these tests change, and the values the shared server had before (put back after each).
RESTORED = {"eta_ddim": 0.0, "disable_token_counters": False, "theme": "system"}
QUICK_CHECKPOINT = "#quicksettings #setting_sd_model_checkpoint"
IS_DARK = "() => document.body.classList.contains('dark')"


def _config(browser_data_dir: Path) -> dict[str, Any]:
    return json.loads((browser_data_dir / "config.json").read_text(encoding="utf-8"))


def _post_options(server: str, values: dict[str, Any]) -> None:
    """Set settings as an A1111 client does (``POST /sdapi/v1/options``)."""
    request = urllib.request.Request(f"{server.rstrip('/')}/sdapi/v1/options", data=json.dumps(values).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.fixture
def restore(server: str) -> Iterator[None]:
    """Put the settings these tests change back after the test."""
    yield
    _post_options(server, RESTORED)


def _settings_tab(page) -> None:
    page.get_by_role("tab", name="Settings", exact=True).click()
    page.wait_for_selector("#settings_submit")


def _apply(page, changed: str) -> None:
    """Press Apply settings and wait for the result naming ``changed``."""
    page.locator("#settings_submit").click()
    page.wait_for_function("text => document.querySelector('#settings_result')?.innerText?.includes(text)",
                           arg=changed, timeout=30_000)


def _choose(page, elem_id: str, option: str | re.Pattern[str]) -> None:
    """Open a dropdown and click one of its options."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=isinstance(option, str)).first.click()


def _reload(page) -> None:
    page.reload()
    page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)


def _wait_for_eta(page, value: str) -> None:
    page.wait_for_function("v => document.querySelector('#setting_eta_ddim input[type=number]')?.value === v",
                           arg=value, timeout=30_000)


@pytest.mark.usefixtures("restore")
def test_a_reload_shows_the_saved_settings_and_a_stale_page_reverts_nothing(open_page, browser_data_dir) -> None:
    stale = open_page()  # loaded before the change below
    page = open_page()
    _settings_tab(page)
    set_number(page, "setting_eta_ddim", 0.3)
    _apply(page, "eta_ddim")
    assert _config(browser_data_dir)["eta_ddim"] == 0.3
    _reload(page)
    _settings_tab(page)
    _wait_for_eta(page, "0.3")  # the tab shows config.json, not the values the page was built with
    _settings_tab(stale)
    assert stale.locator("#setting_eta_ddim input[type=number]").input_value() == "0"  # still the old page
    stale.locator("#setting_disable_token_counters input").check()
    _apply(stale, "disable_token_counters")
    config = _config(browser_data_dir)
    assert (config["eta_ddim"], config["disable_token_counters"]) == (0.3, True)  # eta was not reverted
    assert "eta_ddim" not in stale.locator("#settings_result").inner_text()
    _wait_for_eta(stale, "0.3")  # after Apply the stale page shows config.json too


def test_the_quicksettings_checkpoint_after_a_reload_is_the_one_jobs_use(page, server, browser_data_dir) -> None:
    before = _config(browser_data_dir).get("sd_model_checkpoint", "")
    try:
        _post_options(server, {"sd_model_checkpoint": "aigen-demo-v2"})  # another client chose the demo model
        _reload(page)
        page.wait_for_function("sel => document.querySelector(sel + ' input')?.value?.startsWith('aigen-demo-v2')",
                               arg=QUICK_CHECKPOINT, timeout=30_000)
    finally:  # back to the checkpoint jobs used before ("" cannot be set: it is no checkpoint)
        _post_options(server, {"sd_model_checkpoint": before or "tiny-sd15"})
    _reload(page)  # none chosen: the first checkpoint, never blank
    page.wait_for_function("sel => document.querySelector(sel + ' input')?.value?.startsWith('tiny-sd15')",
                           arg=QUICK_CHECKPOINT, timeout=30_000)
    shown = page.locator(f"{QUICK_CHECKPOINT} input").input_value()
    assert re.fullmatch(r"tiny-sd15\.safetensors( \[[0-9a-f]{10}\])?", shown), shown


def test_a_merge_shows_in_the_quicksettings_list_without_refresh(page, browser_data_dir) -> None:
    folder = browser_data_dir / "models" / "Stable-diffusion"
    try:
        page.get_by_role("tab", name="Checkpoint Merger", exact=True).click()
        for which in ("primary", "secondary"):
            _choose(page, f"modelmerger_{which}_model_name", re.compile(r"^tiny-sd15\.safetensors"))
        page.locator("#modelmerger_custom_name textarea").fill("merged-in-browser")
        page.locator("#modelmerger_merge").click()
        page.wait_for_function("() => document.querySelector('#modelmerger_result textarea')?.value"
                               "?.startsWith('Checkpoint saved: merged-in-browser')", timeout=120_000)
        box = page.locator(f"{QUICK_CHECKPOINT} input")
        box.click()
        box.fill("merged-in")  # filters the list down to it
        options = page.get_by_role("option")
        page.wait_for_function("() => [...document.querySelectorAll('[role=option]')]"
                               ".some(o => o.innerText.startsWith('merged-in-browser'))", timeout=10_000)
        assert any(text.startswith("merged-in-browser") for text in options.all_inner_texts())
        page.keyboard.press("Escape")
        page.locator("#modelmerger_custom_name textarea").click()  # leaves the dropdown without choosing
        assert page.locator(".toast-body.error").count() == 0
        assert page.locator(f"{QUICK_CHECKPOINT} input").input_value().startswith("tiny-sd15")
    finally:
        for path in folder.glob("merged-in-browser*"):
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            else:
                path.unlink()


@pytest.mark.usefixtures("restore")
def test_the_theme_setting_makes_the_page_dark(open_page, browser_data_dir) -> None:
    page = open_page()
    assert not page.evaluate(IS_DARK)  # headless chromium prefers light
    _settings_tab(page)
    _choose(page, "setting_theme", "dark")
    _apply(page, "theme")
    page.wait_for_function(IS_DARK, timeout=10_000)  # at once
    assert _config(browser_data_dir)["theme"] == "dark"
    _reload(page)
    page.wait_for_function(IS_DARK, timeout=30_000)  # and after a reload
    _settings_tab(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)  # the tab is laid out after the click
    page.screenshot(path=str(ARTIFACTS / "settings-dark.png"))
    light = open_page("?__theme=light")  # the address still wins
    light.wait_for_timeout(1500)
    assert not light.evaluate(IS_DARK)
    _choose(page, "setting_theme", "system")
    _apply(page, "theme")
    page.wait_for_function(f"() => !({IS_DARK})()", timeout=10_000)
    page.wait_for_timeout(1000)  # the result line's fade
    page.screenshot(path=str(ARTIFACTS / "settings-light.png"))
    assert _config(browser_data_dir)["theme"] == "system"
