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


def prepare_long_job(page, batch_count: int = 1) -> None:
    """Set txt2img up for a job that runs long enough to interrupt, reload or queue behind:
    150 steps at 512x512, ``batch_count`` times."""
    set_number(page, "txt2img_steps", 150)
    set_number(page, "txt2img_batch_count", batch_count)
    set_large_size(page)


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


def draw_stroke(page, editor_id: str, points: list[tuple[float, float]]) -> None:
    """Pick the Brush of the image editor ``#editor_id`` and drag the mouse through ``points``
    (pixels from the centre of its canvas), as a person paints a mask."""
    page.locator(f"#{editor_id} button[aria-label='Brush']").click()
    canvas = page.locator(f"#{editor_id} canvas").last
    canvas.wait_for(state="visible", timeout=30_000)
    box = canvas.bounding_box()
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(centre_x + points[0][0], centre_y + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(centre_x + x, centre_y + y, steps=4)
    page.mouse.up()
