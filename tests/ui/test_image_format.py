"""Images keep their exact pixels and size on every path between the server and the page:
every image component of the built page saves PNG, and a result sent to inpaint comes back
from the editor unchanged (gradio's WEBP default changed 98 % of the pixels)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData
from PIL import Image, ImageDraw

from modules.app import build_app_context
from modules.settings import SettingsStore
from modules.studio import Studio
from modules.ui.app import build_app
from modules.ui.image_format import IMAGE_FORMAT
from modules.ui.img2img_payload import build_img2img_payload
from modules.ui.send_to import send_to_img2img
from tests.ui.test_img2img_payload import BASE

#: Shows model preview files from disk by path, which gradio hands on without re-encoding.
_SHOWS_FILES_ONLY = {"models_preview"}
_IMAGE_COMPONENTS = (gr.Image, gr.ImageEditor, gr.Gallery)


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, gr.components.Component]]:
    """The built page's image components, by elem_id."""
    data_dir = tmp_path_factory.mktemp("page")
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    studio = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    try:
        blocks = build_app(studio)
        yield {block.elem_id: block for block in blocks.blocks.values()
               if isinstance(block, _IMAGE_COMPONENTS) and block.elem_id}
    finally:
        studio.close()


def _noise(size: tuple[int, int] = (64, 64), seed: int = 7) -> Image.Image:
    """Random pixels: what a lossy codec cannot keep."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_every_image_component_of_the_page_saves_png(components: dict[str, gr.components.Component]) -> None:
    expected = {"txt2img_gallery", "img2img_gallery", "extras_gallery", "txt2img_preview", "img2img_preview",
                "img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch", "img_inpaint_base",
                "img_inpaint_mask", "extras_image", "pnginfo_image"}
    assert expected <= set(components)
    assert any("controlnet_unit_0_image" in elem_id for elem_id in components)  # the ControlNet unit images too
    lossy = {elem_id: c.format for elem_id, c in components.items()
             if elem_id not in _SHOWS_FILES_ONLY and c.format != IMAGE_FORMAT}
    assert lossy == {} and IMAGE_FORMAT == "png"


def test_the_editors_take_the_images_own_size(components: dict[str, gr.components.Component]) -> None:
    for elem_id in ("img2img_sketch", "img2maskimg", "inpaint_sketch"):
        assert components[elem_id].fixed_canvas is False  # a fixed canvas would rescale a 64x64 image


def test_a_result_sent_to_inpaint_reaches_the_editor_and_comes_back_unchanged(
        components: dict[str, gr.components.Component], tmp_path: Path) -> None:
    """Result gallery -> Send to inpaint -> editor background file -> the browser's PNG export
    -> the payload's init image: every pixel and the size are the generated image's."""
    original = _noise()
    gallery = components["txt2img_gallery"]
    shown = gallery.postprocess([(original, "Seed 7")])  # what the page receives
    received = gallery.preprocess(shown)  # what the Send button's handler gets back
    editor_value = send_to_img2img(received, ["a prompt\nSteps: 3, Seed: 7, Size: 64x64"], 0, mode="inpaint")[0]
    editor = components["img2maskimg"]
    sent = editor.postprocess(editor_value)
    background_file = Path(sent.background.path)
    assert background_file.suffix == ".png"
    with Image.open(background_file) as on_page:
        assert on_page.size == (64, 64) and np.array_equal(_pixels(on_page), _pixels(original))
    # The page exports the canvas as PNG blobs named background.png / layer_0.png.
    stroke = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(stroke).rectangle((20, 20, 35, 35), fill=(255, 255, 255, 255))
    stroke.save(tmp_path / "layer_0.png")
    returned = editor.preprocess(EditorData(
        background=FileData(path=str(background_file), orig_name="background.png"),
        layers=[FileData(path=str(tmp_path / "layer_0.png"), orig_name="layer_0.png")],
        composite=FileData(path=str(background_file), orig_name="composite.png")))
    payload = build_img2img_payload({**BASE, "mode": "Inpaint", "inpaint_image": returned})
    assert np.array_equal(_pixels(payload["init_images"][0]), _pixels(original))
    mask = np.asarray(payload["mask"])
    assert mask.shape == (64, 64) and mask[20:36, 20:36].min() == 255 and mask.sum() == 16 * 16 * 255


@pytest.mark.parametrize("elem_id", ["img2img_image", "extras_image", "img_inpaint_base"])
def test_images_sent_to_an_input_keep_their_pixels(components: dict[str, gr.components.Component],
                                                    elem_id: str) -> None:
    original = _noise((48, 80), seed=3)
    sent = components[elem_id].postprocess(original)
    with Image.open(sent.path) as on_page:
        assert on_page.size == (48, 80) and np.array_equal(_pixels(on_page), _pixels(original))
