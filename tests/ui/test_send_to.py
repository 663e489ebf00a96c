"""Send to img2img / inpaint / extras: the chosen image, its parameters and the tab switch."""

from __future__ import annotations

import pytest
from PIL import Image

from modules.ui.send_to import pick_image, received_values, send_to_extras, send_to_img2img

INFO = ("a castle, {detailed}\nNegative prompt: fog\nSteps: 9, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 6.5, Distilled CFG Scale: 4.5, Seed: 42, Size: 64x64, Model hash: 0123456789, Model: tiny, "
        "Version: aigen-v0.1.0")


def _gallery() -> list[tuple[Image.Image, str]]:
    return [(Image.new("RGB", (64, 64), "red"), "Seed 42"), (Image.new("RGB", (64, 64), "green"), "Seed 43")]


def test_the_selected_image_is_sent_else_the_first() -> None:
    gallery, texts = _gallery(), [INFO, INFO.replace("Seed: 42", "Seed: 43")]
    image, text = pick_image(gallery, texts, 1)
    assert image.getpixel((0, 0)) == (0, 128, 0) and "Seed: 43" in text
    image, text = pick_image(gallery, texts, None)
    assert image.getpixel((0, 0)) == (255, 0, 0) and "Seed: 42" in text
    assert pick_image([], [], None) is None


def test_received_values_carry_the_infotext_and_the_image_size() -> None:
    values = received_values(INFO, Image.new("RGB", (80, 56)))
    assert values["prompt"] == "a castle, {detailed}" and values["negative_prompt"] == "fog"
    assert (values["sampler_name"], values["scheduler"], values["steps"]) == ("DPM++ 2M", "Karras", 9)
    assert (values["cfg_scale"], values["distilled_cfg_scale"], values["seed"]) == (6.5, 4.5, 42)
    assert (values["width"], values["height"]) == (80, 56)  # the image's own size wins
    assert not {"batch_size", "n_iter", "styles"} & set(values)


def test_an_unusable_infotext_still_gives_its_prompts() -> None:
    values = received_values("just a prompt\nNegative prompt: n\nSteps: many, Seed: x, Size: 8x8",
                             Image.new("RGB", (8, 8)))
    fields = values.pop("infotext_fields")
    assert values.pop("override_settings") == []  # a pasted infotext clears the tab's chips
    assert values == {"prompt": "just a prompt", "negative_prompt": "n", "width": 8, "height": 8}
    assert fields["Steps"] == "many"  # the raw fields go along, for scripts to read theirs back
    assert received_values("", Image.new("RGB", (8, 4))) == {"width": 8, "height": 4, "infotext_fields": {}}


def test_send_to_img2img_fills_the_image_prompts_and_switches_tabs() -> None:
    image, prompt, negative, values, top, sub = send_to_img2img(_gallery(), [INFO, ""], 0, mode="img2img")
    assert isinstance(image, Image.Image) and image.getpixel((0, 0)) == (255, 0, 0)
    assert (prompt, negative) == ("a castle, {detailed}", "fog") and values["seed"] == 42
    assert values["mode"] == "img2img"
    assert top.selected == "img2img" and sub.selected == "img2img_img2img_tab"


def test_send_to_inpaint_puts_the_image_under_the_mask_editor() -> None:
    editor, prompt, _, values, top, sub = send_to_img2img(_gallery(), [INFO, ""], 1, mode="inpaint")
    assert editor["layers"] == [] and editor["background"] is editor["composite"]
    assert editor["background"].getpixel((0, 0)) == (0, 128, 0)
    assert prompt == "" and values == {"width": 64, "height": 64, "mode": "Inpaint",  # image 1: no infotext
                                       "infotext_fields": {}}
    assert top.selected == "img2img" and sub.selected == "img2img_inpaint_tab"


def test_the_sent_image_is_the_gallery_image_itself_not_resized_or_converted() -> None:
    """A non-square image goes to both inputs as it is (size, mode, pixels): the only encoding
    on the way is the receiving component's lossless PNG (tests/ui/test_image_format.py)."""
    image = Image.effect_noise((48, 80), 64).convert("RGB")
    for mode in ("img2img", "inpaint"):
        target = send_to_img2img([(image, "")], [""], 0, mode=mode)[0]
        sent = target if mode == "img2img" else target["background"]
        assert sent is image and sent.size == (48, 80) and sent.mode == "RGB"
    assert send_to_extras([(image, "")], [""], 0)[0] is image


def test_send_to_extras_switches_to_single_image() -> None:
    image, top, sub = send_to_extras(_gallery(), [INFO], None)
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert top.selected == "extras" and sub.selected == "extras_single_tab"


def test_an_empty_gallery_warns_and_changes_nothing() -> None:
    with pytest.warns(UserWarning, match="Nothing to send"):
        updates = send_to_img2img(None, None, None)
    assert updates == ({"__type__": "update"},) * 6
    with pytest.warns(UserWarning, match="Nothing to send"):
        assert send_to_extras([], [], 0) == ({"__type__": "update"},) * 3


def test_png_info_sends_a_file_and_its_parameters_to_inpaint(tmp_path) -> None:
    from modules.ui.png_info import send_file_to_img2img

    path = tmp_path / "in.png"
    Image.new("RGB", (80, 48), "blue").save(path)
    editor, prompt, negative, values, top, sub = send_file_to_img2img(str(path), INFO, "inpaint")
    assert editor["background"].size == (80, 48) and (prompt, negative) == ("a castle, {detailed}", "fog")
    assert values["steps"] == 9 and values["mode"] == "Inpaint" and (values["width"], values["height"]) == (80, 48)
    assert top.selected == "img2img" and sub.selected == "img2img_inpaint_tab"
