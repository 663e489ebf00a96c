"""The img2img tab's controls to an A1111 payload: where image and mask come from per sub-tab."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from modules.processing.errors import RequestValidationError
from modules.ui.img2img import RECEIVED_FIELDS, received_updates
from modules.ui.img2img_payload import build_img2img_payload, layers_mask, settings_payload
from tests.hostile_images import encoded, one_colour_png, truncated_png

BASE = {"prompt": "p", "steps": 5, "resize_mode": "Crop and resize", "mask_blur": 6, "mask_mode": "Inpaint masked",
        "inpainting_fill": "original", "inpaint_area": "Whole picture", "inpaint_full_res_padding": 32,
        "denoising_strength": 0.6, "script_name": "None", "pixels": 64, "script_mask_blur": 4,
        "script_inpainting_fill": "fill", "direction": ["left"], "noise_q": 1.0, "color_variation": 0.05}


def _stroke_layer(size: tuple[int, int] = (32, 32)) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((4, 4, 11, 11), fill=(255, 0, 0, 255))
    return layer


def _editor() -> dict:
    background = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    composite = background.copy()
    composite.alpha_composite(_stroke_layer())
    return {"background": background, "layers": [_stroke_layer()], "composite": composite}


def test_img2img_tab_sends_the_image_and_no_mask() -> None:
    image = Image.new("RGB", (32, 32))
    payload = build_img2img_payload({**BASE, "mode": "img2img", "init_image": image})
    assert payload["init_images"] == [image] and "mask" not in payload and "mask_blur" not in payload
    assert (payload["denoising_strength"], payload["resize_mode"], payload["steps"]) == (0.6, "Crop and resize", 5)
    assert not {"mode", "mask_mode", "inpaint_area", "pixels", "script_name"} & set(payload)


def test_inpaint_tab_masks_where_the_brush_painted_over_the_background() -> None:
    payload = build_img2img_payload({**BASE, "mode": "Inpaint", "inpaint_image": _editor(),
                                     "mask_mode": "Inpaint not masked", "inpaint_area": "Only masked"})
    assert payload["init_images"][0].getpixel((5, 5)) == (0, 0, 255, 255)  # the background, not the stroke
    assert payload["mask"].getpixel((5, 5)) == 255 and payload["mask"].getpixel((20, 20)) == 0
    assert payload["inpainting_mask_invert"] == 1 and payload["inpaint_full_res"] is True
    assert (payload["mask_blur"], payload["inpainting_fill"]) == (6, "original")


def test_sketch_tabs_keep_the_strokes_as_content() -> None:
    sketch = build_img2img_payload({**BASE, "mode": "Sketch", "sketch": _editor()})
    assert sketch["init_images"][0].getpixel((5, 5))[:3] == (255, 0, 0) and "mask" not in sketch
    inpaint_sketch = build_img2img_payload({**BASE, "mode": "Inpaint sketch", "inpaint_sketch": _editor()})
    assert inpaint_sketch["init_images"][0].getpixel((5, 5))[:3] == (255, 0, 0)
    assert inpaint_sketch["mask"].getpixel((5, 5)) == 255 and inpaint_sketch["inpaint_full_res"] is False


def test_inpaint_upload_uses_the_separate_mask() -> None:
    mask = Image.new("L", (32, 32), 255)
    payload = build_img2img_payload({**BASE, "mode": "Inpaint upload", "inpaint_upload_mask": mask,
                                     "inpaint_upload_image": Image.new("RGB", (32, 32))})
    assert payload["mask"] is mask
    with pytest.raises(RequestValidationError, match="mask"):
        build_img2img_payload({**BASE, "mode": "Inpaint upload", "inpaint_upload_image": Image.new("RGB", (8, 8))})


@pytest.mark.parametrize("mode", ["img2img", "Sketch", "Inpaint", "Inpaint sketch"])
def test_a_missing_image_is_a_readable_error(mode: str) -> None:
    with pytest.raises(RequestValidationError, match=f"in the {mode} tab"):
        build_img2img_payload({**BASE, "mode": mode})


def test_an_unpainted_inpaint_editor_sends_an_empty_mask() -> None:
    editor = {**_editor(), "layers": []}
    payload = build_img2img_payload({**BASE, "mode": "Inpaint", "inpaint_image": editor})
    assert payload["mask"].getextrema() == (0, 0)  # the engine then returns the input with a notice
    assert payload["mask"].size == (32, 32)  # the image's size, so "Inpaint not masked" repaints it all
    assert layers_mask(editor) is None


def test_scripts_become_a1111_script_fields() -> None:
    payload = settings_payload({**BASE, "script_name": "Outpainting mk2"})
    assert payload["script_name"] == "Outpainting mk2"
    assert payload["script_args"] == {"pixels": 64, "mask_blur": 4, "direction": ["left"], "noise_q": 1.0,
                                      "color_variation": 0.05}
    assert "init_images" not in payload


def test_sent_parameters_fill_the_controls_and_open_the_mode() -> None:
    updates = received_updates({"steps": 9, "seed": 42, "distilled_cfg_scale": 4.5, "mode": "Inpaint"})
    by_name = dict(zip(RECEIVED_FIELDS, updates, strict=False))
    steps, seed, mode, controls = by_name["steps"], by_name["seed"], updates[-2], updates[-1]
    assert steps["value"] == 9 and seed["value"] == 42 and "value" not in by_name["sampler_name"]
    assert by_name["distilled_cfg_scale"]["value"] == 4.5
    assert mode == "Inpaint" and controls["visible"] is True


def test_slider_floats_become_the_integers_requests_need() -> None:
    from modules.processing.intake.api_fields_img2img import img2img_request_from_api
    from modules.ui.generation_form import PAYLOAD_FIELDS, payload_from_values
    from modules.ui.img2img import EXTRA_FIELDS

    values = {**BASE, "mode": "img2img", "init_image": Image.new("RGB", (64, 64)), "script_name": "Outpainting mk2",
              "pixels": 64.0, "script_mask_blur": 8.0, "mask_blur": 4.0, "inpaint_full_res_padding": 32.0,
              "prompt": "p", "negative_prompt": "", "sampler_name": "Euler a", "scheduler": "Automatic",
              "steps": 5.0, "width": 64.0, "height": 64.0, "n_iter": 1.0, "batch_size": 1.0, "cfg_scale": 7.0,
              "distilled_cfg_scale": 3.5, "seed": -1.0, "subseed": -1.0, "subseed_strength": 0.0,
              "seed_resize_from_w": 0.0, "seed_resize_from_h": 0.0, "styles": [], "sketch": None,
              "inpaint_image": None, "inpaint_sketch": None, "inpaint_upload_image": None,
              "inpaint_upload_mask": None, "batch_input_dir": "", "batch_output_dir": "", "batch_mask_dir": ""}
    fields = PAYLOAD_FIELDS + EXTRA_FIELDS
    payload = build_img2img_payload(payload_from_values(tuple(values[name] for name in fields), fields))
    request = img2img_request_from_api(payload)  # would name script_args.mask_blur if it stayed 8.0
    assert (request.width, request.height) == (128, 64) and request.mask_blur_x == 8  # grown to the left
    assert request.distilled_cfg_scale == 3.5  # the shared slider reaches img2img's request too


def test_uploaded_files_are_opened_as_rgba_after_their_size_is_checked(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(encoded(Image.new("RGB", (16, 8), "red")))
    payload = build_img2img_payload({**BASE, "mode": "img2img", "init_image": str(tmp_path / "in.png")})
    assert payload["init_images"][0].mode == "RGBA" and payload["init_images"][0].size == (16, 8)
    (tmp_path / "big.png").write_bytes(one_colour_png(5000, 5000))
    (tmp_path / "cut.png").write_bytes(truncated_png())
    for values, field in (({"mode": "img2img", "init_image": str(tmp_path / "big.png")}, "image"),
                          ({"mode": "Inpaint upload", "inpaint_upload_image": str(tmp_path / "in.png"),
                            "inpaint_upload_mask": str(tmp_path / "cut.png")}, "mask")):
        with pytest.raises(RequestValidationError) as caught:
            build_img2img_payload({**BASE, **values})
        assert caught.value.field == field and str(tmp_path) not in str(caught.value)
