"""ControlNet unit arithmetic: A1111 client forms, out-of-range values put back in range,
pixel-perfect resolution, fitting the map, control-mode scales and the infotext round trip."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from modules.processing.control.control_preprocess import PREPROCESSORS
from modules.processing.control.controlnet_units import (
    UNIT_DEFAULTS,
    clamp_unit,
    control_scales,
    fit_map,
    ignored_fields,
    normalize_unit,
    parse_unit_infotext,
    pixel_perfect_resolution,
    unit_infotext,
    unit_residuals,
    unit_step_active,
)
from modules.processing.sampling.hooks import UNetCall


def test_a1111_client_forms_are_understood() -> None:
    unit = normalize_unit({"input_image": "b64", "model": "control_v11p_sd15_canny [d14c016b]", "resize_mode": 2,
                           "guessmode": True, "weight": 1})
    assert unit == {"input_image": "b64", "image": "b64", "model": "control_v11p_sd15_canny", "enabled": True,
                    "resize_mode": "Resize and Fill", "guessmode": True,
                    "control_mode": "ControlNet is more important", "weight": 1.0}
    assert normalize_unit({"control_mode": "my prompt is more important", "resize_mode": "Inner_Fit"}) == {
        "enabled": True, "control_mode": "My prompt is more important", "resize_mode": "Crop and Resize"}
    assert normalize_unit(None) == {}
    with pytest.raises(ValueError, match="control_mode"):
        normalize_unit({"control_mode": 3})
    with pytest.raises(ValueError, match="unit object"):
        normalize_unit(["canny"])


def test_the_old_guidance_field_is_the_ending_step_and_unread_fields_are_named() -> None:
    assert normalize_unit({"guidance": 0.5})["guidance_end"] == 0.5
    assert normalize_unit({"guidance": 0.5, "guidance_end": 0.7})["guidance_end"] == 0.7
    sent = {"module": "canny", "input_image": "b64", "guessmode": False, "lowvram": True, "hr_option": "Both",
            "is_ui": False, "save_detected_map": False, "input_mode": "simple"}
    assert ignored_fields(sent) == ["hr_option", "input_mode", "is_ui", "lowvram"]
    assert ignored_fields({"enabled": True, "weight": 1.0}) == []


def test_out_of_range_values_are_put_back_in_range_and_said() -> None:
    canny = PREPROCESSORS["canny"]
    unit, notices = clamp_unit({"weight": 5.0, "guidance_start": -0.5, "guidance_end": 1.0, "processor_res": 8,
                                "threshold_a": 999.0, "threshold_b": -1.0}, canny)
    # As sd-webui-controlnet: weight and steps clamped, resolution and thresholds back to the default (-1).
    assert unit == {"weight": 2.0, "guidance_start": 0.0, "guidance_end": 1.0, "processor_res": -1,
                    "threshold_a": -1.0, "threshold_b": -1.0}
    assert notices == ["weight 5 is outside 0..2; 2 was used", "guidance_start -0.5 is outside 0..1; 0 was used",
                       "processor_res 8 is outside 64..2048; the preprocessor's default 512 was used",
                       "threshold_a 999 is outside 1..255 (Canny Low Threshold of canny); the default 100 was used"]
    # In range, -1 ("the default"), not a number (the field check refuses it), or a slider the
    # preprocessor does not have: left alone, nothing said.
    kept = {"weight": 1.5, "threshold_a": 50.0, "threshold_b": -1.0, "processor_res": 512, "guidance_end": "x"}
    assert clamp_unit(kept, canny) == (kept, [])
    assert clamp_unit({"threshold_a": 999.0}, PREPROCESSORS["invert"]) == ({"threshold_a": 999.0}, [])
    assert clamp_unit({"processor_res": 9000, "threshold_a": 999.0}, None) == (
        {"processor_res": -1, "threshold_a": 999.0}, ["processor_res 9000 is outside 64..2048; the preprocessor's "
                                                      "default was used"])


@pytest.mark.parametrize(("image", "target", "mode", "expected"), [
    ((512, 512), (512, 512), "Crop and Resize", 512),
    ((1024, 768), (512, 512), "Crop and Resize", 512),   # cover: short side 768 x max(0.5, 0.667)
    ((1024, 768), (512, 512), "Resize and Fill", 512),   # fit: long side 1024 x min(0.5, 0.667)
    ((256, 128), (768, 512), "Just Resize", 512),        # stretch: short side 128 x max(3, 4)
    ((2000, 1000), (512, 512), "Resize and Fill", 512),
])
def test_pixel_perfect_resolution(image: tuple[int, int], target: tuple[int, int], mode: str, expected: int) -> None:
    assert pixel_perfect_resolution(image, target, mode) == expected


def test_fit_map_resize_modes() -> None:
    wide = Image.new("RGB", (200, 100), (255, 255, 255))
    assert fit_map(wide, 64, 64, "Just Resize").getpixel((0, 0)) == (255, 255, 255)
    assert fit_map(wide, 64, 64, "Crop and Resize").getpixel((32, 0)) == (255, 255, 255)
    filled = fit_map(wide, 64, 64, "Resize and Fill")
    assert filled.size == (64, 64) and filled.getpixel((32, 0)) == (0, 0, 0)  # black band: no control there
    assert filled.getpixel((32, 32)) == (255, 255, 255)


def test_control_scales_follow_the_mode() -> None:
    assert control_scales(13, 0.5, "Balanced") == [0.5] * 13
    soft = control_scales(13, 1.0, "My prompt is more important")
    assert soft[-1] == 1.0 and soft[0] == pytest.approx(0.825 ** 12)
    assert soft == control_scales(13, 1.0, "ControlNet is more important")


def test_step_range_is_inclusive_of_both_ends() -> None:
    unit = {"guidance_start": 0.25, "guidance_end": 0.5}
    assert [unit_step_active(unit, step, 4) for step in range(4)] == [False, True, True, False]


def test_infotext_round_trip() -> None:
    unit = {**UNIT_DEFAULTS, "enabled": True, "module": "canny", "model": "cn", "weight": 0.5,
            "processor_res": 512, "threshold_a": 100.0, "threshold_b": 200.0}
    text = unit_infotext(unit, "cn [0123456789]")
    assert text == ("Module: canny, Model: cn [0123456789], Weight: 0.5, Resize Mode: Crop and Resize, "
                    "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, "
                    "Pixel Perfect: False, Control Mode: Balanced")
    back = parse_unit_infotext(text)
    assert back == {**{k: v for k, v in unit.items() if k not in ("image", "save_detected_map")}, "model": "cn"}
    with pytest.raises(ValueError):
        parse_unit_infotext("garbage")


class _Recorder(torch.nn.Module):
    """Stands in for a ControlNet: residuals of ones, one per block, and the rows it was given."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, **kwargs: object) -> tuple:
        self.rows = sample.shape[0]
        ones = torch.ones_like(sample)
        return (ones, ones), ones


def test_controlnet_is_more_important_leaves_the_unconditional_rows_alone() -> None:
    call = UNetCall(torch.zeros(4, 4, 8, 8), torch.tensor(10), torch.zeros(4, 7, 32), None, copies=2, uses_cfg=True,
                    guidance_scale=7.0)
    hint = torch.zeros(1, 3, 64, 64)
    recorder = _Recorder()
    balanced = unit_residuals(recorder, call, hint, {"weight": 2.0, "control_mode": "Balanced"})
    assert recorder.rows == 4 and all(t.eq(2.0).all() for t in (*balanced.down, balanced.mid))
    control = unit_residuals(recorder, call, hint, {"weight": 1.0, "control_mode": "ControlNet is more important"})
    assert recorder.rows == 2  # the ControlNet ran on the conditional rows only
    assert control.mid[:2].eq(0).all() and control.mid[2:].eq(1).all()
    assert control.down[0][2:].eq(0.825 ** 2).all()
