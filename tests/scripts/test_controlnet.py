"""The ControlNet script as users call it: units in ``alwayson_scripts`` (A1111 extension field
names) change the image through a tiny random-weight ControlNet in ``models/ControlNet``, and
what cannot run is said, never silently left out."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules.extensions.job_scripts import script_args_from_infotext, tab_scripts
from modules.models.loader import LoadedModel
from modules.processing.errors import RequestValidationError
from modules.processing.output.infotext import parse_infotext
from modules.studio import Studio
from modules.ui.script_controls import ScriptControls, script_payload
from tests.studio_fixtures import BASE
from tests.tiny_controlnet import write_tiny_controlnet

MODEL = "tiny-control-sd15"


@pytest.fixture
def data_dir(data_dir: Path, sd15_model: LoadedModel) -> Path:
    """The studio's data folder with a tiny ControlNet made from the tiny checkpoint's UNet."""
    write_tiny_controlnet(data_dir / "models" / "ControlNet" / MODEL, sd15_model.pipeline.unet)
    return data_dir


def _control_image() -> Image.Image:
    """A white square on black: canny finds its edges."""
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[16:48, 16:48] = 255
    return Image.fromarray(image)


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _unit(**fields: object) -> dict:
    return {"enabled": True, "image": _b64(_control_image()), "module": "canny", "model": MODEL, **fields}


def _run(generate: Callable, *units: dict, **payload: object) -> tuple[bytes, str]:
    result = generate(**payload, alwayson_scripts={"ControlNet": {"args": list(units)}})
    assert result.hook_errors == []
    return result.images[0].tobytes(), result.infotexts[0]


def test_weight_zero_is_the_plain_image_and_weight_one_changes_it(generate: Callable) -> None:
    plain = generate().images[0].tobytes()
    assert _run(generate, _unit(weight=0.0))[0] == plain
    assert _run(generate, _unit(weight=1.0))[0] != plain
    # Outside its step range (BASE has 2 steps: progress 0 and 0.5) the unit does nothing.
    assert _run(generate, _unit(guidance_start=0.6, guidance_end=1.0))[0] == plain
    # A unit sent switched off, or no unit at all, is the plain image too.
    assert _run(generate, _unit(enabled=False))[0] == plain


def test_units_add_up_and_modes_change_the_image(generate: Callable) -> None:
    one, _ = _run(generate, _unit())
    two, _ = _run(generate, _unit(), _unit(weight=0.5))
    assert one != two
    prompt_first, _ = _run(generate, _unit(control_mode="My prompt is more important"))
    control_first, _ = _run(generate, _unit(control_mode="ControlNet is more important"))
    assert len({one, prompt_first, control_first}) == 3
    # A1111 clients send modes as indexes and models with their hash.
    assert _run(generate, _unit(control_mode=2, model=f"{MODEL} [0123abcd]"))[0] == control_first


def test_infotext_names_each_unit_and_pastes_back(generate: Callable, studio: Studio) -> None:
    _, infotext = _run(generate, _unit(weight=0.75, guidance_end=0.9, pixel_perfect=True))
    value = parse_infotext(infotext)["ControlNet 0"]
    assert value.startswith(f"Module: canny, Model: {MODEL} [") and "Weight: 0.75" in value
    assert "Threshold A: 100, Threshold B: 200" in value and "Processor Res: 64" in value  # pixel perfect: 64 px
    pasted = script_args_from_infotext(studio.context.scripts, False, parse_infotext(infotext))
    unit = pasted["ControlNet"]["unit_0"]
    assert unit["enabled"] and unit["model"] == MODEL and unit["weight"] == 0.75 and unit["guidance_end"] == 0.9
    assert unit["pixel_perfect"] is True and unit["control_mode"] == "Balanced"


def test_the_web_form_and_the_api_make_the_same_image(generate: Callable, studio: Studio) -> None:
    """The UI hands the unit's image as a PIL image; the API as base64: one image."""
    form = {f"script::ControlNet::unit_0.{name}": value
            for name, value in {**_unit(), "image": _control_image(), "weight": 0.8}.items()}
    payload = script_payload({**BASE, **form}, ScriptControls(always_on=["ControlNet"]))
    status = studio.wait(studio.submit_txt2img(payload), timeout=300)
    assert status.state == "done", status.error
    assert status.result.images[0].tobytes() == _run(generate, _unit(weight=0.8))[0]


def test_img2img_uses_its_input_image_when_the_unit_has_none(generate: Callable) -> None:
    source = _b64(_control_image())
    unit = {k: v for k, v in _unit().items() if k != "image"}
    with_input, _ = _run(generate, unit, init_images=[source], denoising_strength=0.6)
    explicit, _ = _run(generate, _unit(), init_images=[source], denoising_strength=0.6)
    plain = generate(init_images=[source], denoising_strength=0.6).images[0].tobytes()
    assert with_input == explicit != plain


@pytest.mark.parametrize(("unit", "words"), [
    (_unit(image="not base64!!"), "base64"),
    (_unit(control_mode=7), "control_mode"),
    (_unit(weight="heavy"), "weight: expected a number"),
    (_unit(processor_res=100.5), "processor_res: expected a whole number"),
    (_unit(guidance_start=0.8, guidance_end=0.5), "guidance_start 0.8 is after guidance_end 0.5"),
    ("canny", "expected a ControlNet unit object"),
])
def test_malformed_units_are_refused_naming_the_script_and_field(studio: Studio, unit: object, words: str) -> None:
    with pytest.raises(RequestValidationError, match=words) as caught:
        studio.submit_txt2img({**BASE, "alwayson_scripts": {"ControlNet": {"args": [unit]}}})
    assert caught.value.field == "alwayson_scripts.ControlNet"


@pytest.mark.parametrize(("unit", "why"), [
    (_unit(model="None"), "no ControlNet model chosen"),
    (_unit(model="no-such-net"), f"no ControlNet model 'no-such-net' in models/ControlNet; available: {MODEL}"),
    ({**_unit(), "image": None}, "no control image"),
    (_unit(module="softedge_hed"), "ControlNetHED.pth"),
    (_unit(module="depth_anything"), "no preprocessor 'depth_anything'"),
])
def test_a_unit_that_cannot_run_is_a_notice_and_only_units_that_ran_are_in_the_infotext(
        generate: Callable, unit: dict, why: str) -> None:
    result = generate(alwayson_scripts={"ControlNet": {"args": [unit, _unit(weight=0.5)]}})
    assert result.hook_errors == [] and len(result.notices) == 1
    assert result.notices[0].startswith("ControlNet unit 0 not applied: ") and why in result.notices[0]
    params = parse_infotext(result.infotexts[0])
    assert "ControlNet 0" not in params and "ControlNet 1" in params  # the other unit did run
    assert result.images[0].tobytes() == _run(generate, {"enabled": False}, _unit(weight=0.5))[0]


def test_a_broken_model_file_is_a_notice_and_the_other_units_run(generate: Callable, studio: Studio,
                                                                 data_dir: Path) -> None:
    broken = data_dir / "models" / "ControlNet" / "broken-net"
    shutil.copytree(data_dir / "models" / "ControlNet" / MODEL, broken)
    weights = broken / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"oops")  # cut short
    studio.context.controlnets.refresh()
    units = {"ControlNet": {"args": [_unit(model="broken-net"), _unit(weight=0.5)]}}
    other_unit_only = _run(generate, {"enabled": False}, _unit(weight=0.5))[0]
    # Told by its header when the request is read: the unit is off, and not in the infotext.
    result = generate(alwayson_scripts=units)
    assert result.notices == ["ControlNet unit 0 not applied: its weights file diffusion_pytorch_model.safetensors "
                              "is only 4 bytes; a safetensors file starts with an 8-byte header length"]
    assert "ControlNet 0" not in parse_infotext(result.infotexts[0]) and result.images[0].tobytes() == other_unit_only
    # A readable file that is no ControlNet fails only when the job loads it: said then, without the path.
    save_file({"weight": torch.zeros(2)}, weights)
    result = generate(alwayson_scripts=units)
    assert result.hook_errors == [] and len(result.notices) == 1
    assert result.notices[0].startswith("ControlNet unit 0 not applied: its model broken-net could not be used: ")
    assert str(data_dir) not in result.notices[0]
    assert result.images[0].tobytes() == other_unit_only


def test_out_of_range_values_are_clamped_and_said(generate: Callable) -> None:
    """As sd-webui-controlnet: a threshold out of its slider's range is its default, a weight
    above 2 is 2; the unit runs with those, and the result says what was changed."""
    result = generate(alwayson_scripts={"ControlNet": {"args": [_unit(threshold_a=999, weight=5)]}})
    assert result.notices == [
        "ControlNet unit 0: weight 5 is outside 0..2; 2 was used",
        "ControlNet unit 0: threshold_a 999 is outside 1..255 (Canny Low Threshold of canny); the default 100 "
        "was used"]
    assert result.images[0].tobytes() == _run(generate, _unit(threshold_a=100, weight=2.0))[0]
    assert result.images[0].tobytes() != generate().images[0].tobytes()
    value = parse_infotext(result.infotexts[0])["ControlNet 0"]
    assert "Weight: 2," in value and "Threshold A: 100," in value


def test_fields_of_other_versions_are_ignored_in_one_notice_per_unit(generate: Callable) -> None:
    others = {"input_mode": "simple", "batch_images": "", "hr_option": "Both", "is_ui": False, "loopback": False,
              "output_dir": "", "mask_image": None, "union_control_type": "Unknown", "pulid_mode": "Fidelity"}
    result = generate(alwayson_scripts={"ControlNet": {"args": [_unit(**others), _unit(weight=0.5, is_ui=True)]}})
    assert result.notices == [
        "ControlNet unit 0: ignored the fields it does not use here: batch_images, hr_option, input_mode, is_ui, "
        "loopback, mask_image, output_dir, pulid_mode, union_control_type",
        "ControlNet unit 1: ignored the fields it does not use here: is_ui"]
    assert result.images[0].tobytes() == _run(generate, _unit(), _unit(weight=0.5))[0]
    # A unit that is off is not read further: nothing to say about it.
    assert generate(alwayson_scripts={"ControlNet": {"args": [{"enabled": False, "is_ui": True}]}}).notices == []


def test_a_controlnet_of_another_family_is_refused_when_submitted(studio: Studio, data_dir: Path,
                                                                  sdxl_model: LoadedModel) -> None:
    write_tiny_controlnet(data_dir / "models" / "ControlNet" / "tiny-control-sdxl", sdxl_model.pipeline.unet)
    studio.context.controlnets.refresh()
    units = [{"enabled": False}, _unit(model="tiny-control-sdxl")]
    with pytest.raises(RequestValidationError) as caught:
        studio.submit_txt2img({**BASE, "alwayson_scripts": {"ControlNet": {"args": units}}})
    assert caught.value.field == "alwayson_scripts.ControlNet.args[1].model"
    assert "'tiny-control-sdxl' is made for SDXL, but the checkpoint 'tiny-sd15' is SD1.x" in caught.value.message
    # The checkpoint named in override_settings is the one checked.
    with pytest.raises(RequestValidationError, match="made for SDXL"):
        studio.submit_txt2img({**BASE, "override_settings": {"sd_model_checkpoint": "tiny-sd15"},
                               "alwayson_scripts": {"ControlNet": {"args": [_unit(model="tiny-control-sdxl")]}}})
    # The SD1.x ControlNet is accepted, and so is the SDXL one in a unit that is off.
    units = [{**units[1], "enabled": False}, _unit()]
    status = studio.wait(studio.submit_txt2img({**BASE, "alwayson_scripts": {"ControlNet": {"args": units}}}),
                         timeout=300)
    assert status.state == "done" and "ControlNet 1" in status.result.infotexts[0]


def test_preview_shows_the_preprocessed_map(studio: Studio) -> None:
    _, always_on = tab_scripts(studio.context.scripts, False)
    (script,) = [s for s in always_on if s.title() == "ControlNet"]
    group = script.ui(False)["unit_0"]
    unit = {**group.default_value(), "image": _control_image(), "module": "canny", "processor_res": 128}
    control_map = group.preview(unit)
    assert control_map.size == (128, 128) and control_map.getextrema()[0] == (0, 255)
    with pytest.raises(ValueError, match="Upload a control image"):
        group.preview({**unit, "image": None})


def test_detected_maps_follow_the_images_unless_switched_off(generate: Callable, studio: Studio) -> None:
    result = generate(alwayson_scripts={"ControlNet": {"args": [_unit(processor_res=64), _unit(module="none")]}})
    assert len(result.images) == 2 and len(result.infotexts) == len(result.seeds) == 2  # the canny unit's map only
    detected = np.asarray(result.images[1])
    assert detected.shape == (64, 64, 3) and set(np.unique(detected)) == {0, 255}  # canny edges of the square
    assert result.infotexts[1] == "" and len(result.paths) <= 1  # a map is shown, never saved as an output
    # Per unit, as sd-webui-controlnet's save_detected_map (on unless false).
    maps = generate(alwayson_scripts={"ControlNet": {"args": [_unit(save_detected_map=False),
                                                              _unit(processor_res=128, save_detected_map=True)]}})
    assert len(maps.images) == 2 and maps.images[1].size == (128, 128) and maps.notices == []
    assert len(generate(alwayson_scripts={"ControlNet": {"args": [_unit(save_detected_map=False)]}}).images) == 1
    assert studio.update_extension_settings({"control_net_no_detectmap": True}) == []
    assert len(generate(alwayson_scripts={"ControlNet": {"args": [_unit()]}}).images) == 1
