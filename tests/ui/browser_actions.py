"""What a person does in the page, as Playwright steps the browser tests share."""

from __future__ import annotations


def set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def set_large_size(page) -> None:
    """512x512 keeps a long job running for seconds; the default is the tiny model's native 64."""
    set_number(page, "txt2img_width", 512)
    set_number(page, "txt2img_height", 512)


def wait_for_progress(page, text: str) -> None:
    """Wait until the progress line contains ``text`` (queue position, "step", "Interrupted")."""
    page.wait_for_function(
        "text => (document.querySelector('#txt2img_progress') || {}).innerText?.includes(text)",
        arg=text, timeout=60_000,
    )


def generate_small(page, tab: str, prompt: str, seed: int) -> str:
    """Fill the prompt, 3 steps at 64x64 and ``seed`` in ``tab``, generate, and return the info text."""
    page.locator(f"#{tab}_prompt textarea").fill(prompt)
    for name, value in (("steps", 3), ("width", 64), ("height", 64)):
        set_number(page, f"{tab}_{name}", value)
    page.locator(f"#{tab}_seed input").fill(str(seed))
    page.locator(f"#{tab}_generate").click()
    page.wait_for_selector(f"#{tab}_gallery img", timeout=90_000)
    page.wait_for_function(
        "([tab, seed]) => (document.querySelector(`#${tab}_info textarea`) || {}).value?.includes(`Seed: ${seed}`)",
        arg=[tab, seed], timeout=30_000,
    )
    return page.locator(f"#{tab}_info textarea").input_value()
