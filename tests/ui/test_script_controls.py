"""The web form's script controls: values to A1111 script fields, and pasted infotext back."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from modules.studio import Studio
from modules.ui.script_controls import ScriptControls, pasted_script_values, script_payload, uploaded_image
from tests.hostile_images import encoded, one_colour_png
from tests.studio_fixtures import data_dir, studio

__all__ = ["data_dir", "studio"]  # fixtures, used by name

THRESHOLD = "Dynamic thresholding"


def test_form_values_become_named_script_arguments() -> None:
    controls = ScriptControls(selectable=["Prompt matrix"], always_on=[THRESHOLD])
    values = {"prompt": "a|b", "script_name": "Prompt matrix", "script::Prompt matrix::margin_size": 4,
              f"script::{THRESHOLD}::enabled": True, f"script::{THRESHOLD}::limit": 2.0}
    assert script_payload(values, controls) == {
        "prompt": "a|b", "script_name": "Prompt matrix", "script_args": {"margin_size": 4},
        "alwayson_scripts": {THRESHOLD: {"args": {"enabled": True, "limit": 2.0}}}}
    assert "script_name" not in script_payload({"prompt": "x", "script_name": "None"}, ScriptControls())


def test_a_pasted_infotext_sets_the_script_controls_it_names(studio: Studio) -> None:
    fields = (f"script::{THRESHOLD}::enabled", f"script::{THRESHOLD}::percentile", f"script::{THRESHOLD}::limit",
              "script::X/Y/Z plot::x_type")
    updates = pasted_script_values(studio, ScriptControls(fields=fields), False,
                                   {"Dynamic thresholding": "True", "Dynamic thresholding percentile": "98.5",
                                    "Dynamic thresholding limit": "not a number"})
    assert [u.get("value", "unchanged") for u in updates] == [True, 98.5, "unchanged", "unchanged"]


def test_group_fields_travel_as_one_unit_object() -> None:
    controls = ScriptControls(always_on=["ControlNet"])
    values = {"prompt": "x", "script::ControlNet::unit_0.enabled": True, "script::ControlNet::unit_0.weight": 0.5,
              "script::ControlNet::unit_1.enabled": False}
    assert script_payload(values, controls)["alwayson_scripts"] == {
        "ControlNet": {"args": {"unit_0": {"enabled": True, "weight": 0.5}, "unit_1": {"enabled": False}}}}


def test_a_pasted_controlnet_unit_sets_its_fields_but_not_its_image(studio: Studio) -> None:
    fields = ("script::ControlNet::unit_0.enabled", "script::ControlNet::unit_0.module",
              "script::ControlNet::unit_0.weight", "script::ControlNet::unit_0.image",
              "script::ControlNet::unit_1.enabled")
    text = '"Module: canny, Model: None, Weight: 0.6, Control Mode: My prompt is more important"'
    updates = pasted_script_values(studio, ScriptControls(fields=fields), False, {"ControlNet 0": text.strip('"')})
    assert [u.get("value", "unchanged") for u in updates] == [True, "canny", 0.6, "unchanged", "unchanged"]


def test_an_uploaded_control_image_is_opened_from_its_file_and_checked_first(tmp_path: Path) -> None:
    key = "script::ControlNet::unit_0.image"
    controls = ScriptControls(always_on=["ControlNet"], image_fields=(key,))
    (tmp_path / "ok.png").write_bytes(encoded(Image.new("RGBA", (8, 6), (0, 0, 0, 0))))
    unit = script_payload({key: str(tmp_path / "ok.png")}, controls)["alwayson_scripts"]["ControlNet"]["args"]
    image = unit["unit_0"]["image"]
    assert image.size == (8, 6) and image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)  # on white
    (tmp_path / "big.png").write_bytes(one_colour_png(5000, 5000))
    with pytest.raises(gr.Error, match="5000x5000") as caught:
        script_payload({key: str(tmp_path / "big.png")}, controls)
    assert str(tmp_path) not in str(caught.value)
    assert uploaded_image(None, "x") is None
