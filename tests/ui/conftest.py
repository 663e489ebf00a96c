"""One live server and one chromium for the browser tests of this package (each start takes
seconds on 2 cores): every browser test module opens its own page on them.

Tests that change server state (settings, installed models) put it back, or use values no
other test reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tiny_models import write_tiny_checkpoint
from tests.ui.live_server import REPO_ROOT, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
#: Screenshots the browser tests take, for a person to look at (not compared by the tests).
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
#: The viewport the tests use unless they say otherwise (A1111's layout needs this width).
VIEWPORT = {"width": 1400, "height": 1200}


@pytest.fixture(scope="package")
def browser_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared server's data dir: the tiny SD1.x checkpoint in models/Stable-diffusion."""
    root = tmp_path_factory.mktemp("browser-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "sd15")
    return root


@pytest.fixture(scope="package")
def server(browser_data_dir: Path) -> Iterator[str]:
    """The URL of the shared live server (``webui.py --data-dir browser_data_dir``), run without a
    desktop whatever the machine has (📂 then says where the folder is instead of opening a window)."""
    yield from start_server(browser_data_dir, env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """One headless chromium (Debian's package, driven by Playwright) for the package."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="package")
def open_page(browser, server: str) -> Iterator[Callable[..., object]]:
    """``open_page(path="", viewport=VIEWPORT)``: a new page (own browser context: own storage)
    on the shared server, loaded until the txt2img prompt is there. Closed at the end."""
    contexts = []

    def open_(path: str = "", viewport: dict[str, int] | None = None):
        context = browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(server + path)
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def page(open_page):
    """One page per test module, shared by its tests (they run in file order)."""
    return open_page()
