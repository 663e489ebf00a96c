"""Pasting an infotext (PNG Info "Send to", a PNG dropped on the prompt): every field the tab has
a control for is set, and the settings it records become "Override settings" chips that the
tab's jobs carry as ``override_settings``."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pytest

from modules.ui.hires_controls import HIRES_FIELDS
from modules.ui.infotext_paste import (
    dropped_infotext,
    img2img_values,
    override_chips,
    overrides_from_chips,
    paste_txt2img,
    with_override_chips,
)
from modules.ui.txt2img import PAYLOAD_FIELDS
from tests.ui.test_app import _handler_of, _ids, config  # noqa: F401  (the built page, shared fixture)

FIELDS = PAYLOAD_FIELDS + HIRES_FIELDS
INFOTEXT = (
    "a red fox in snow\nNegative prompt: blurry, text\n"
    "Steps: 31, Sampler: Euler a, Schedule type: Karras, CFG scale: 8.5, Distilled CFG Scale: 2.5, Seed: 9876, "
    "Size: 640x448, "
    "Model hash: 0123456789, Model: other-model, VAE: kl-f8, Variation seed: 55, Variation seed strength: 0.25, "
    "Seed resize from: 320x224, Denoising strength: 0.45, Clip skip: 2, ENSD: 31337, RNG: GPU, "
    "Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent, Hires sampler: Euler, Version: v1.10.1"
)


def _values(updates: list[Any]) -> dict[str, Any]:
    return dict(zip(FIELDS, updates[:len(FIELDS)], strict=True))


def test_send_to_txt2img_sets_every_control_of_the_infotext() -> None:
    updates = paste_txt2img(INFOTEXT, FIELDS, current={})
    values = _values(updates)
    assert (values["prompt"], values["negative_prompt"]) == ("a red fox in snow", "blurry, text")
    assert (values["sampler_name"], values["scheduler"], values["steps"]) == ("Euler a", "Karras", 31)
    assert (values["cfg_scale"], values["seed"], values["width"], values["height"]) == (8.5, 9876, 640, 448)
    assert values["distilled_cfg_scale"] == 2.5
    assert (values["subseed"], values["subseed_strength"]) == (55, 0.25)
    assert (values["seed_resize_from_w"], values["seed_resize_from_h"]) == (320, 224)
    assert values["enable_hr"] is True and values["hr_scale"] == 1.5 and values["hr_second_pass_steps"] == 12
    assert values["denoising_strength"] == 0.45 and values["hr_sampler_name"] == "Euler"
    chips = updates[-1]
    assert chips["value"] == ["Clip skip: 2", "Model hash: 0123456789", "VAE: kl-f8", "ENSD: 31337", "RNG: GPU"]
    assert chips["visible"] is True


def test_clip_skip_becomes_an_override_of_the_job_not_a_setting_change() -> None:
    chips = paste_txt2img(INFOTEXT, FIELDS, current={})[-1]["value"]
    assert overrides_from_chips(chips) == {
        "CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "0123456789", "sd_vae": "kl-f8",
        "eta_noise_seed_delta": 31337, "randn_source": "GPU"}
    sent: list[dict[str, Any]] = []
    submit = with_override_chips(lambda payload: sent.append(payload) or "job-1")
    assert submit({"prompt": "p", "override_settings": ["Clip skip: 2"]}) == "job-1"
    assert sent[-1] == {"prompt": "p", "override_settings": {"CLIP_stop_at_last_layers": 2}}
    submit({"prompt": "p", "override_settings": []})  # no chips: the settings apply as they are
    assert sent[-1] == {"prompt": "p"}


def test_only_settings_that_differ_from_the_current_ones_get_a_chip() -> None:
    current = {"CLIP_stop_at_last_layers": 2, "sd_model_checkpoint": "model.safetensors [0123456789]",
               "sd_vae": "Automatic", "eta_noise_seed_delta": 31337, "randn_source": "CPU"}
    params = {"Clip skip": "2", "Model hash": "0123456789", "VAE": "kl-f8", "ENSD": "31337", "RNG": "GPU"}
    assert override_chips(params, current) == ["VAE: kl-f8", "RNG: GPU"]
    # A checkpoint whose hash is not computed yet is recognised by its name.
    unhashed = {"sd_model_checkpoint": "tiny-sd15.safetensors"}
    assert override_chips({"Model hash": "0123456789", "Model": "tiny-sd15"}, unhashed) == []
    assert override_chips({"Model hash": "0123456789", "Model": "other"}, unhashed) == ["Model hash: 0123456789"]
    # An infotext with none of them hides the dropdown (A1111 shows it only when it has chips).
    chips = paste_txt2img("a plain prompt\nSteps: 5, Seed: 1, Size: 64x64", FIELDS, current)[-1]
    assert chips["value"] == [] and chips["visible"] is False


def test_flux_parts_become_one_override_of_the_chosen_modules() -> None:
    forge = ("a fox\nSteps: 20, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7, Size: 64x64, "
             "Model: flux1-dev, Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16")
    chips = paste_txt2img(forge, FIELDS, current={"forge_additional_modules": ()})[-1]["value"]
    assert chips == ["Module 1: ae", "Module 2: clip_l", "Module 3: t5xxl_fp16"]
    # one setting, the files in order, as Forge's "VAE / Text Encoder" selector holds them
    assert overrides_from_chips(chips) == {"forge_additional_modules": ["ae", "clip_l", "t5xxl_fp16"]}
    chosen = {"forge_additional_modules": ("ae.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors")}
    assert paste_txt2img(forge, FIELDS, current=chosen)[-1]["value"] == []  # already what is chosen


def test_pasting_into_img2img_sets_denoising_and_the_inpaint_controls() -> None:
    text = ("a bowl of fruit\nSteps: 12, Sampler: DDIM, CFG scale: 6, Seed: 3, Size: 96x64, Denoising strength: 0.35, "
            "Clip skip: 3, Mask blur: 9, Mask mode: Inpaint not masked, Masked content: latent noise, "
            "Inpaint area: Only masked, Masked area padding: 48")
    values = img2img_values(text, {"CLIP_stop_at_last_layers": 1})
    assert (values["prompt"], values["steps"], values["width"], values["height"]) == ("a bowl of fruit", 12, 96, 64)
    assert values["denoising_strength"] == 0.35 and values["mask_blur"] == 9
    assert (values["mask_mode"], values["inpainting_fill"]) == ("Inpaint not masked", "latent noise")
    assert (values["inpaint_area"], values["inpaint_full_res_padding"]) == ("Only masked", 48)
    assert values["override_settings"] == ["Clip skip: 3"]
    # A txt2img image without a hires pass leaves img2img's denoising strength as it is.
    assert "denoising_strength" not in img2img_values("p\nSteps: 5, Seed: 1, Size: 64x64")


def test_a_dropped_file_without_an_infotext_warns_and_gives_nothing() -> None:
    assert dropped_infotext(json.dumps({"name": "a.png", "infotext": "a cat\nSteps: 5, Seed: 1, Size: 8x8"})) \
        == "a cat\nSteps: 5, Seed: 1, Size: 8x8"
    with pytest.warns(UserWarning, match=r"photo\.jpg is not a PNG image.*the prompt is unchanged"):
        assert dropped_infotext(json.dumps({"name": "photo.jpg", "problem": "not-png"})) is None
    with pytest.warns(UserWarning, match="has no generation parameters"):
        assert dropped_infotext(json.dumps({"name": "plain.png", "problem": "no-parameters"})) is None
    with pytest.warns(UserWarning):
        assert dropped_infotext("not json") is None


def test_an_infotext_without_parameters_is_refused() -> None:
    with pytest.raises(gr.Error, match="no generation parameters"):
        paste_txt2img("   ", FIELDS)


def test_the_page_wires_send_to_and_the_drop_to_the_override_chips(config: dict[str, Any]) -> None:  # noqa: F811
    ids = _ids(config)
    for button, tab in (("pnginfo_send_txt2img", "txt2img"), ("txt2img_paste_infotext", "txt2img")):
        outputs = _handler_of(config, button)["outputs"]
        wanted = ("prompt", "neg_prompt", "steps", "seed", "sampling", "cfg_scale", "distilled_cfg_scale", "width",
                  "override_settings")
        assert all(ids[f"{tab}_{name}"]["id"] in outputs for name in wanted), button
    dropped = _handler_of(config, "img2img_paste_infotext")
    assert ids["img2img_prompt"]["id"] in dropped["outputs"] and dropped["js"]
    assert ids["img2img_override_settings"]["props"]["label"] == "Override settings"
