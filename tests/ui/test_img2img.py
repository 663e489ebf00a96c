"""The img2img tab's own logic: which Studio call a Generate makes, per open sub-tab."""

from __future__ import annotations

from typing import Any

from PIL import Image

from modules.ui.img2img import img2img_submit
from tests.ui.test_img2img_payload import BASE


class _RecordingStudio:
    """Stands in for ``Studio``: records what the tab submits."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def submit_img2img(self, payload: dict[str, Any]) -> str:
        self.calls.append(("single", (payload,)))
        return "job-1"

    def submit_img2img_batch(self, payload: dict[str, Any], input_dir: str, output_dir: str, mask_dir: str) -> str:
        self.calls.append(("batch", (payload, input_dir, output_dir, mask_dir)))
        return "job-2"


def test_an_image_sub_tab_submits_one_img2img_payload() -> None:
    studio = _RecordingStudio()
    image = Image.new("RGB", (16, 16))
    assert img2img_submit(studio)({**BASE, "mode": "img2img", "init_image": image}) == "job-1"
    ((kind, (payload,)),) = studio.calls
    assert kind == "single" and payload["init_images"] == [image] and payload["denoising_strength"] == 0.6


def test_the_batch_sub_tab_submits_the_folders_and_the_inpaint_settings() -> None:
    studio = _RecordingStudio()
    values = {**BASE, "mode": "Batch", "batch_input_dir": "/in", "batch_output_dir": None, "batch_mask_dir": "/m",
              "mask_mode": "Inpaint not masked", "inpaint_area": "Only masked"}
    assert img2img_submit(studio)(values) == "job-2"
    ((kind, (payload, input_dir, output_dir, mask_dir)),) = studio.calls
    assert (kind, input_dir, output_dir, mask_dir) == ("batch", "/in", "", "/m")
    assert payload["inpainting_mask_invert"] == 1 and payload["inpaint_full_res"] is True
    assert payload["mask_blur"] == 6 and "init_images" not in payload and "mode" not in payload
