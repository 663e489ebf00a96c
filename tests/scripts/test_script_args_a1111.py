"""A1111's positional ``script_args`` for every built-in script: the list an A1111 1.10 client
sends resolves to the same named arguments (so the same job) as our named form."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.extensions.api import Script, ScriptArgError, ScriptResources
from modules.extensions.job_scripts import tab_scripts
from modules.extensions.loader import ScriptCatalog, ScriptSource
from modules.extensions.runner import resolve_script_args
from modules.models.upscalers import UpscalerLibrary
from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields_img2img import img2img_request_from_api
from scripts.loopback import Loopback
from scripts.prompt_matrix import PromptMatrix
from scripts.prompts_from_file import PromptsFromFile
from scripts.sd_upscale import SdUpscale
from scripts.xyz_grid import A1111_AXES, XYZPlot, a1111_axes, parse_axis_values
from tests.upscaler_files import write_tiny_upscaler

#: What A1111 1.10's txt2img UI sends for an untouched X/Y/Z plot: X = Seed (index 1), no Y/Z.
XYZ_DEFAULTS = [1, "", [], 0, "", [], 0, "", [], True, False, False, False, False, False, False, 0, False]


def _xyz(**changes: Any) -> list[Any]:
    """A1111's list with some positions changed (``p0=...``)."""
    values = list(XYZ_DEFAULTS)
    for key, value in changes.items():
        values[int(key[1:])] = value
    return values


def _same(script: Script, is_img2img: bool, positional: Sequence[Any], named: dict[str, Any]) -> None:
    assert resolve_script_args(script, is_img2img, positional) == resolve_script_args(script, is_img2img, named)


def _refused(script: Script, is_img2img: bool, positional: Sequence[Any], message: str) -> None:
    with pytest.raises(ScriptArgError) as refused:
        resolve_script_args(script, is_img2img, positional)
    assert message in str(refused.value)


def test_a1111_axis_lists_per_tab() -> None:
    assert len(A1111_AXES) == 45
    txt2img, img2img = [name for name, _ in a1111_axes(False)], [name for name, _ in a1111_axes(True)]
    assert len(txt2img) == 42 and len(img2img) == 41
    assert (txt2img[5], txt2img[6], txt2img[7], txt2img[25], txt2img[28]) == (
        "Hires steps", "CFG Scale", "Prompt S/R", "Denoising", "Hires upscaler")
    assert (img2img[5], img2img[6], img2img[7], img2img[24], img2img[27]) == (
        "CFG Scale", "Image CFG Scale", "Prompt S/R", "Denoising", "Cond. Image Mask Weight")
    assert txt2img[9] == img2img[9] == "Sampler" and txt2img[-1] == img2img[-1] == "Size"


def test_xyz_full_a1111_list_gives_the_named_job() -> None:
    positional = _xyz(p1="1, 2", p3=7, p4="cat, dog", p6=4, p7="1-3", p10=True, p13=True, p16=4)
    _same(XYZPlot(), False, positional, {
        "x_type": "Seed", "x_values": "1, 2", "y_type": "Prompt S/R", "y_values": "cat, dog", "z_type": "Steps",
        "z_values": "1-3", "include_lone_images": True, "vary_seeds_x": True, "margin_size": 4})
    _same(XYZPlot(), False, XYZ_DEFAULTS, {})  # A1111's defaults are ours


def test_xyz_indexes_count_on_the_tabs_own_list() -> None:
    _same(XYZPlot(), False, _xyz(p0=6, p1="3, 7"), {"x_type": "CFG Scale", "x_values": "3, 7"})
    _same(XYZPlot(), True, _xyz(p0=5, p1="3, 7"), {"x_type": "CFG Scale", "x_values": "3, 7"})
    _same(XYZPlot(), True, _xyz(p0=24, p1="0.3, 0.6"), {"x_type": "Denoising", "x_values": "0.3, 0.6"})


def test_xyz_names_instead_of_indexes() -> None:
    _same(XYZPlot(), False, _xyz(p0="Seed", p1="1, 2", p3="cfg scale", p4="5"),
          {"x_type": "Seed", "x_values": "1, 2", "y_type": "CFG Scale", "y_values": "5"})


def test_xyz_forges_distilled_cfg_axis_by_name_keeps_a1111s_indexes() -> None:
    # Forge inserts "Distilled CFG Scale" after "CFG Scale"; A1111's numbering stays what indexes mean.
    _same(XYZPlot(), False, _xyz(p0="Distilled CFG Scale", p1="2, 3.5"),
          {"x_type": "Distilled CFG Scale", "x_values": "2, 3.5"})
    _same(XYZPlot(), True, _xyz(p3="distilled cfg scale", p4="3"),
          {"y_type": "Distilled CFG Scale", "y_values": "3"})
    _same(XYZPlot(), False, _xyz(p0=7, p1="a, b"), {"x_type": "Prompt S/R", "x_values": "a, b"})
    assert "Distilled CFG Scale" not in dict(a1111_axes(False))


def test_xyz_axes_with_choices_read_the_dropdown_unless_csv_mode() -> None:
    script = XYZPlot()
    dropdown = resolve_script_args(script, False, _xyz(p0=9, p1="DDIM", p2=["Euler", "DPM++ 2M"]))
    assert (dropdown["x_type"], parse_axis_values(dropdown["x_values"], str)) == ("Sampler", ["Euler", "DPM++ 2M"])
    _same(script, False, _xyz(p0=9, p1="DDIM", p2=["Euler"], p17=True), {"x_type": "Sampler", "x_values": "DDIM"})
    # An empty dropdown (a client that only fills the text) and an axis without choices use the text.
    _same(script, False, _xyz(p0=9, p1="DDIM"), {"x_type": "Sampler", "x_values": "DDIM"})
    _same(script, False, _xyz(p0=4, p1="1-3", p2=["9"]), {"x_type": "Steps", "x_values": "1-3"})
    styles = resolve_script_args(script, False, _xyz(p0=30, p2=["Style, with comma", "Plain"]))
    assert parse_axis_values(styles["x_values"], str) == ["Style, with comma", "Plain"]


def test_xyz_shorter_and_older_lists() -> None:
    _same(XYZPlot(), False, [4, "1-2"], {"x_type": "Steps", "x_values": "1-2"})
    # Before 1.7 there was no "Vary seeds": margin_size came at 13 (and csv_mode at 14, from 1.3).
    _same(XYZPlot(), False, [1, "1, 2", [], 0, "", [], 0, "", [], True, True, False, False, 6, False],
          {"x_type": "Seed", "x_values": "1, 2", "include_lone_images": True, "margin_size": 6})
    _same(XYZPlot(), False, [1, "1, 2", [], 0, "", [], 0, "", [], False, False, False, True, 8],
          {"x_type": "Seed", "x_values": "1, 2", "draw_legend": False, "no_fixed_seeds": True, "margin_size": 8})


@pytest.mark.parametrize(("is_img2img", "positional", "message"), [
    (False, _xyz(p0=99), "script_args[0]: 99 is not an axis index; A1111's txt2img axes are 0..41"),
    (False, _xyz(p0=-1), "script_args[0]: -1 is not an axis index"),
    (False, _xyz(p3=28), "script_args[3]: X/Y/Z axis 'Hires upscaler' (index 28 on txt2img) is not supported here; "
                         "supported: Nothing, Seed"),
    (False, _xyz(p6="Hires upscaler"), "script_args[6]: X/Y/Z axis 'Hires upscaler' is not supported here"),
    (False, _xyz(p0=25), "script_args[0]: X/Y/Z axis 'Denoising' (index 25 on txt2img) is not supported here"),
    (True, _xyz(p0=27), "X/Y/Z axis 'Cond. Image Mask Weight' (index 27 on img2img) is not supported here"),
    (False, _xyz(p0="Nope"), "script_args[0]: expected an axis index or name, got 'Nope'"),
    (False, _xyz(p0=True), "script_args[0]: expected an axis index or name, got True"),
    (False, _xyz(p2="Euler"), "script_args[2]: expected a list of values, got 'Euler'"),
    (False, _xyz(p17="no"), "script_args[17] (csv_mode): expected true or false, got 'no'"),
    (False, [*XYZ_DEFAULTS, True], "X/Y/Z plot: expected at most 18 arguments"),
    (False, _xyz(p9="yes"), "X/Y/Z plot: draw_legend: expected true or false"),
])
def test_xyz_bad_positions_are_named(is_img2img: bool, positional: list, message: str) -> None:
    _refused(XYZPlot(), is_img2img, positional, message)


def _sd_upscale(tmp_path: Path) -> Script:
    """SD upscale as a job gets it: with the studio's upscalers (the built-ins and ``2x-tiny``)."""
    write_tiny_upscaler(tmp_path / "ESRGAN" / "2x-tiny.safetensors", scale=2)
    library = UpscalerLibrary([tmp_path / "ESRGAN"], allow_pickle=False)
    catalog = ScriptCatalog([ScriptSource(SdUpscale, Path("sd_upscale.py"))],
                            resources=ScriptResources(upscalers=library))
    selectable, _ = tab_scripts(catalog, True)
    return selectable[0]


def test_sd_upscale_upscaler_by_index_or_name(tmp_path: Path) -> None:
    script = _sd_upscale(tmp_path)
    assert script.ui(True)["upscaler"].choices == ("None", "Lanczos", "Nearest", "2x-tiny")
    named = {"overlap": 32, "upscaler": "2x-tiny", "scale_factor": 2.0}
    _same(script, True, ["<p>Will upscale the image</p>", 32, 3, 2.0], named)
    _same(script, True, ["", 32, "2x-tiny", 2.0], named)
    _same(script, True, [None, 64, 0, 2.0], {"upscaler": "None"})
    _same(script, True, ["", 16], {"overlap": 16})


@pytest.mark.parametrize(("positional", "message"), [
    (["", 64, 4, 2.0], "script_args[2] (upscaler_index): 4 is not an upscaler here; give its index or name: "
                       "0 None, 1 Lanczos, 2 Nearest, 3 2x-tiny"),
    (["", 64, "ESRGAN_4x", 2.0], "script_args[2] (upscaler_index): 'ESRGAN_4x' is not an upscaler here"),
    (["", 64, True, 2.0], "script_args[2] (upscaler_index): True is not an upscaler here"),
    (["", 64, 0, 2.0, 1], "SD upscale: expected at most 4 arguments (info, overlap, upscaler_index, scale_factor)"),
    (["", 300, 0, 2.0], "SD upscale: overlap: 300 is outside 0..256"),
])
def test_sd_upscale_bad_positions_are_named(tmp_path: Path, positional: list, message: str) -> None:
    _refused(_sd_upscale(tmp_path), True, positional, message)


def test_prompt_matrix_prompts_from_file_and_loopback_in_a1111_order() -> None:
    _same(PromptMatrix(), False, [True, True, "negative", "space", 6],
          {"put_at_start": True, "different_seeds": True, "prompt_type": "negative", "variations_delimiter": "space",
           "margin_size": 6})
    _same(PromptMatrix(), False, [True], {"put_at_start": True})
    _same(PromptsFromFile(), False, [True, False, "end", "a\nb"],
          {"checkbox_iterate": True, "prompt_position": "end", "prompt_txt": "a\nb"})
    # A1111 before "Insert prompts at the": [checkbox_iterate, checkbox_iterate_batch, prompt_txt].
    _same(PromptsFromFile(), False, [False, True, "a cat"], {"checkbox_iterate_batch": True, "prompt_txt": "a cat"})
    _same(Loopback(), True, [3, 0.3, "Lazy", "None"],
          {"loops": 3, "final_denoising_strength": 0.3, "denoising_curve": "Lazy"})
    _same(Loopback(), True, [3, 0.3, "Lazy", None], {"loops": 3, "final_denoising_strength": 0.3,
                                                     "denoising_curve": "Lazy"})


@pytest.mark.parametrize(("script", "positional", "message"), [
    (Loopback(), [4, 0.5, "Linear", "CLIP"], "script_args[3] (append_interrogation): 'CLIP' needs an interrogator"),
    (Loopback(), [4, 0.5, "Linear", "Tags"], "script_args[3] (append_interrogation): 'Tags' is not one of None, CLIP"),
    (Loopback(), [4, 0.5, "Linear", "None", 1], "Loopback: expected at most 4 arguments"),
    (PromptMatrix(), [False, False, "positive", "comma", 0, 1], "Prompt matrix: expected at most 5 arguments"),
    (PromptMatrix(), [False, False, 1], "Prompt matrix: prompt_type: expected text, got 1"),
    (PromptsFromFile(), [False, False, "middle", "a"], "prompt_position: 'middle' is not one of start, end"),
])
def test_other_scripts_bad_positions_are_named(script: Script, positional: list, message: str) -> None:
    _refused(script, True, positional, message)


def _image() -> Image.Image:
    return Image.fromarray(np.full((64, 64, 3), 90, np.uint8))


@pytest.mark.parametrize(("script", "positional", "named"), [
    ("Poor man's outpainting", [16, 2, 1, ["left", "up"]],
     {"pixels": 16, "mask_blur": 2, "inpainting_fill": "original", "direction": ["left", "up"]}),
    ("Outpainting mk2", ["<p>Recommended settings</p>", 16, 2, ["down"], 0.5, 0.1],
     {"pixels": 16, "mask_blur": 2, "direction": ["down"], "noise_q": 0.5, "color_variation": 0.1}),
])
def test_outpainting_positional_is_the_named_request(script: str, positional: list, named: dict) -> None:
    base = {"init_images": [_image()], "script_name": script, "seed": 3}
    assert img2img_request_from_api({**base, "script_args": positional}) == img2img_request_from_api(
        {**base, "script_args": named})


@pytest.mark.parametrize(("script", "args", "field", "message"), [
    ("Poor man's outpainting", [16, 2, 7, ["left"]], "script_args.inpainting_fill", "0 (fill), 1 (original)"),
    ("Poor man's outpainting", [16, 2, 0, ["left"], 1], "script_args", "takes at most 4 arguments"),
    ("Outpainting mk2", ["", 16, 2, ["left"], 1.0, 0.05, 3], "script_args", "takes at most 6 arguments"),
    ("Outpainting mk2", "16", "script_args", "must be a list in A1111's order"),
])
def test_outpainting_bad_positions_are_named(script: str, args: Any, field: str, message: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        img2img_request_from_api({"init_images": [_image()], "script_name": script, "script_args": args})
    assert refused.value.field == field and message in refused.value.message


def test_sd_upscale_none_keeps_the_size_as_a1111_does(generate: Callable) -> None:
    result = generate(init_images=[_image()], denoising_strength=0.3, script_name="SD upscale",
                      script_args=["", 16, 0, 2.0])
    assert result.hook_errors == [] and [image.size for image in result.images] == [(64, 64)]
