"""Every top-level tab, opened by a click at A1111's common widths: nothing spills sideways, no
error toast, and a full-page screenshot per tab and width for a person to look at."""

from __future__ import annotations

import pytest

from tests.ui.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

#: The tabs in the page's order (their labels, as the tab buttons show them).
TABS = ("txt2img", "img2img", "Extras", "PNG Info", "Models", "Checkpoint Merger", "Settings", "Extensions")


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_tab_fits_the_window(open_page, width: int) -> None:
    page = open_page(viewport={"width": width, "height": 1000})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label in TABS:
        page.get_by_role("tab", name=label, exact=True).click()
        page.wait_for_timeout(400)  # the tab's content is laid out after the click
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{label} at {width} px is {overflow} px wider than the window"
        assert page.locator(".toast-body.error").count() == 0, f"{label} shows an error"
        name = label.lower().replace(" ", "-")
        page.screenshot(path=str(ARTIFACTS / f"tab-{name}-{width}.png"), full_page=True)
