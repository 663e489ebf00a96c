"""The whole page built without launching: named API unchanged, Send-to and 📂 wired as intended."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest

from modules.app import build_app_context
from modules.settings import SettingsStore
from modules.studio import Studio
from modules.ui.app import build_app
from tests.ui.test_server_api import NAMED


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("page")
    args = argparse.Namespace(data_dir=data_dir, ckpt_dir=[], precision="fp32", no_half=False, device="cpu",
                              allow_pickle=False)
    studio = Studio(build_app_context(args), SettingsStore(data_dir / "config.json"))
    try:
        yield build_app(studio).get_config_file()
    finally:
        studio.close()


def _ids(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Components by elem_id."""
    return {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}


def _handler_of(config: dict[str, Any], elem_id: str) -> dict[str, Any]:
    (dependency,) = [d for d in config["dependencies"]
                     if any(target == _ids(config)[elem_id]["id"] for target, _ in d["targets"])]
    return dependency


def test_named_api_is_unchanged_and_new_plumbing_is_private(config: dict[str, Any]) -> None:
    public = {f"/{d['api_name']}" for d in config["dependencies"] if d["api_visibility"] != "private"}
    assert public == set(NAMED)


def test_img2img_and_extras_have_their_a1111_inputs(config: dict[str, Any]) -> None:
    ids = _ids(config)
    assert (ids["img2img_image"]["type"], ids["img2img_image"]["props"]["label"]) == ("image", "Image for img2img")
    assert ids["img2maskimg"]["type"] == "imageeditor"
    assert ids["img2maskimg"]["props"]["label"] == "Image for inpainting with mask"
    assert (ids["extras_image"]["type"], ids["extras_image"]["props"]["label"]) == ("image", "Source")


def test_send_buttons_fill_the_receiving_inputs_and_switch_tabs(config: dict[str, Any]) -> None:
    ids = _ids(config)
    for button, image in (("txt2img_send_to_img2img", "img2img_image"), ("txt2img_send_to_inpaint", "img2maskimg")):
        outputs = _handler_of(config, button)["outputs"]
        assert [ids[image]["id"], ids["img2img_prompt"]["id"], ids["img2img_neg_prompt"]["id"]] == outputs[:3]
        assert ids["tabs"]["id"] in outputs and ids["mode_img2img"]["id"] in outputs
    extras = _handler_of(config, "txt2img_send_to_extras")["outputs"]
    assert extras == [ids["extras_image"]["id"], ids["tabs"]["id"], ids["mode_extras"]["id"]]
    save = _handler_of(config, "save_txt2img")
    assert save["outputs"] == [ids["download_files_txt2img"]["id"], ids["html_log_txt2img"]["id"]]


def test_open_folder_starts_hidden_and_the_style_editor_closed(config: dict[str, Any]) -> None:
    ids = _ids(config)
    assert ids["txt2img_open_folder"]["props"]["visible"] is False  # shown on load, only on loopback
    assert ids["txt2img_styles_dialog"]["props"]["visible"] is False


def test_img2img_controls_have_a1111_labels_ranges_and_defaults(config: dict[str, Any]) -> None:
    ids = _ids(config)

    def props(elem_id: str, *keys: str) -> tuple[Any, ...]:
        return tuple(ids[elem_id]["props"].get(key) for key in keys)

    def choices(elem_id: str) -> list[str]:
        return [label for label, _ in ids[elem_id]["props"]["choices"]]

    assert choices("resize_mode") == ["Just resize", "Crop and resize", "Resize and fill",
                                      "Just resize (latent upscale)"]
    assert props("img2img_mask_blur", "label", "minimum", "maximum", "value") == ("Mask blur", 0, 64, 4)
    assert choices("img2img_mask_mode") == ["Inpaint masked", "Inpaint not masked"]
    assert props("img2img_inpainting_fill", "label", "value") == ("Masked content", "original")
    assert choices("img2img_inpainting_fill") == ["fill", "original", "latent noise", "latent nothing"]
    assert props("img2img_inpaint_full_res", "label", "value") == ("Inpaint area", "Whole picture")
    assert props("img2img_inpaint_full_res_padding", "label", "minimum", "maximum", "step", "value") == (
        "Only masked padding, pixels", 0, 256, 4, 32)
    assert props("img2img_denoising_strength", "label", "minimum", "maximum", "step", "value") == (
        "Denoising strength", 0, 1, 0.01, 0.75)
    assert ids["img2img_inpaint_controls"]["props"]["visible"] is False  # shown by the inpaint sub-tabs
    tabs = [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"
            and str(c["props"].get("elem_id", "")).startswith("img2img_") and c["props"]["elem_id"].endswith("_tab")]
    assert tabs == ["img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch"]
    assert props("img2img_batch_input_dir", "label") == ("Input directory",)
    assert ids["img2img_sampling"]["props"]["label"] == "Sampling method"  # the shared form, img2img_ prefix


def test_distilled_cfg_scale_sits_under_cfg_scale_and_reaches_the_job(config: dict[str, Any]) -> None:
    ids = _ids(config)
    for tab in ("txt2img", "img2img"):
        slider = ids[f"{tab}_distilled_cfg_scale"]["props"]
        assert (slider["label"], slider["minimum"], slider["maximum"], slider["step"], slider["value"]) == (
            "Distilled CFG Scale", 0, 30, 0.1, 3.5)
        assert slider["info"] == "FLUX.1-dev only; other models ignore it"
        inputs = _handler_of(config, f"{tab}_generate")["inputs"]
        cfg = inputs.index(ids[f"{tab}_cfg_scale"]["id"])
        assert inputs[cfg + 1] == ids[f"{tab}_distilled_cfg_scale"]["id"]  # the Generate handler gets it
    received = [d for d in config["dependencies"] if ids["img2img_distilled_cfg_scale"]["id"] in d["outputs"]]
    assert received, "Send to img2img / a dropped PNG does not set img2img's Distilled CFG Scale"


def test_scripts_get_a_dropdown_controls_and_accordions_from_their_schema(config: dict[str, Any]) -> None:
    ids = _ids(config)
    txt2img_choices = [choice[0] for choice in ids["txt2img_script"]["props"]["choices"]]
    assert txt2img_choices[0] == "None"
    assert {"X/Y/Z plot", "Prompt matrix", "Prompts from file or textbox"} <= set(txt2img_choices)
    assert "Loopback" not in txt2img_choices  # an img2img-only script
    img2img_choices = [choice[0] for choice in ids["img2img_script"]["props"]["choices"]]
    assert img2img_choices[:3] == ["None", "Poor man's outpainting", "Outpainting mk2"]
    assert {"Loopback", "SD upscale", "X/Y/Z plot"} <= set(img2img_choices)
    # Controls named after their script and argument, with the schema's label, range and default.
    limit = ids["script_txt2img_dynamic_thresholding_limit"]
    assert (limit["type"], limit["props"]["label"], limit["props"]["value"]) == ("slider", "Keep x0 within ±", 3.0)
    assert (limit["props"]["minimum"], limit["props"]["maximum"]) == (1.0, 10.0)
    assert ids["script_txt2img_x_y_z_plot_controls"]["props"]["visible"] is False  # shown when chosen


def test_extensions_tab_lists_the_shipped_extension(config: dict[str, Any]) -> None:
    ids = _ids(config)
    rows = ids["extensions_table"]["props"]["value"]["data"]
    assert ["dynamic-thresholding", "1.0.0", "yes", "ok"] == rows[0][:4]
    assert ids["extensions_install"]["props"]["interactive"] is not False  # a local server may install


def test_png_info_send_to_txt2img_also_fills_the_scripts_controls(config: dict[str, Any]) -> None:
    ids = _ids(config)
    dependency = _handler_of(config, "pnginfo_send_txt2img")
    assert ids["script_txt2img_dynamic_thresholding_limit"]["id"] in dependency["outputs"]


def test_settings_tab_shows_the_settings_extensions_declare(config: dict[str, Any]) -> None:
    control = _ids(config)["setting_dynamic_thresholding_min_sigma"]
    assert control["type"] == "slider" and control["props"]["maximum"] == 100.0
    assert "settings_extensions_submit" in _ids(config)


def test_a_sent_image_sets_img2img_script_controls_too(config: dict[str, Any]) -> None:
    ids = _ids(config)
    received = [d for d in config["dependencies"]
                if ids["img2img_steps"]["id"] in d["outputs"] and ids["img2img_mask_blur"]["id"] in d["outputs"]
                and ids["script_img2img_dynamic_thresholding_limit"]["id"] in d["outputs"]]
    assert received, "the received-values handler does not update the script controls"


def test_models_merger_and_extras_tabs_have_their_controls(config: dict[str, Any]) -> None:
    ids = _ids(config)
    assert [c[0] for c in ids["models_kind"]["props"]["choices"]][:2] == ["Checkpoints", "LoRA"]
    assert {"models_table", "models_install_url", "models_delete_confirm", "models_memory_usage"} <= set(ids)
    assert ids["modelmerger_interp_method"]["props"]["value"] == "Weighted sum"
    assert [c[0] for c in ids["extras_upscaler_1"]["props"]["choices"]] == ["None", "Lanczos", "Nearest"]
    assert ids["txt2img_hr_upscaler"]["props"]["value"] == "Latent"


def test_controlnet_has_a_tab_per_unit_with_a_preview(config: dict[str, Any]) -> None:
    ids = _ids(config)
    assert {f"script_txt2img_controlnet_unit_{i}" for i in range(3)} <= set(ids)  # the default 3 units
    assert "script_txt2img_controlnet_unit_3" not in ids
    module = ids["script_img2img_controlnet_unit_1_module"]
    assert module["props"]["label"] == "Preprocessor" and module["props"]["value"] == "none"
    assert {"canny", "shuffle", "softedge_hed"} <= {choice[0] for choice in module["props"]["choices"]}
    assert ids["script_txt2img_controlnet_unit_0_image"]["type"] == "image"
    assert "script_txt2img_controlnet_unit_0_preview_button" in ids
    assert ids["setting_control_net_unit_count"]["props"]["maximum"] == 10
    dependency = _handler_of(config, "pnginfo_send_txt2img")
    assert ids["script_txt2img_controlnet_unit_0_weight"]["id"] in dependency["outputs"]
