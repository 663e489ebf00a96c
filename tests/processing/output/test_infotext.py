"""A1111 infotext: exact format, golden strings both ways, replay from a saved PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.generation.txt2img import OutputOptions, run_txt2img
from modules.processing.jobs.job import Job
from modules.processing.output.infotext import VERSION, build_infotext, parse_infotext, quote
from modules.processing.output.request_infotext import (
    apply_payload_infotext,
    module_parameters,
    modules_from_params,
    request_from_infotext,
    txt2img_parameters,
    txt2img_values_from_infotext,
)
from modules.processing.requests import Txt2ImgRequest

# From reference/a1111_reference.md §3.2: an A1111 1.10 image (hires + LoRA).
A1111_GOLDEN = (
    "masterpiece, 1girl, <lora:add_detail:0.8>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3552167042, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.5, Clip skip: 2, "
    'Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", '
    "Version: v1.10.1"
)


def test_parses_a1111_golden_string() -> None:
    params = parse_infotext(A1111_GOLDEN)
    assert params["Prompt"] == "masterpiece, 1girl, <lora:add_detail:0.8>"
    assert params["Negative prompt"] == "lowres, bad anatomy"
    assert params["Sampler"] == "DPM++ 2M" and params["Schedule type"] == "Karras"
    assert (params["Size-1"], params["Size-2"]) == ("512", "768")
    assert params["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert params["Clip skip"] == "2" and params["Version"] == "v1.10.1"


def test_a1111_golden_string_becomes_a_request() -> None:
    request = request_from_infotext(A1111_GOLDEN)
    assert request.prompt.startswith("masterpiece") and request.negative_prompt == "lowres, bad anatomy"
    assert (request.num_inference_steps, request.guidance_scale, request.seed) == (20, 7.0, 3552167042)
    assert (request.width, request.height, request.clip_skip) == (512, 768, 2)
    assert (request.sampler_name, request.scheduler) == ("DPM++ 2M", "Karras")
    assert request.checkpoint == "6ce0161689"


def test_old_combined_sampler_name_is_read() -> None:
    text = "a cat\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1, Size: 512x512"
    request = request_from_infotext(text)
    assert (request.sampler_name, request.scheduler, request.guidance_scale) == ("DPM++ 2M", "Karras", 6.5)


def test_writes_a1111_key_order_and_quoting() -> None:
    request = Txt2ImgRequest(prompt="a cat, sitting", negative_prompt="blurry", sampler_name="Euler a",
                             seed=5, subseed=9, subseed_strength=0.25, clip_skip=2, width=512, height=768,
                             tiling=True, eta_noise_seed_delta=31337)
    params = txt2img_parameters(request, seed=5, subseed=9, model_name="my model", model_hash="0123456789")
    params["Lora hashes"] = "x: 1, y: 2"
    text = build_infotext(request.prompt, request.negative_prompt, params)
    assert text == (
        "a cat, sitting\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7, Seed: 5, Size: 512x768, "
        "Model hash: 0123456789, Model: my model, Variation seed: 9, Variation seed strength: 0.25, "
        f'Clip skip: 2, ENSD: 31337, RNG: CPU, Tiling: True, Lora hashes: "x: 1, y: 2", Version: {VERSION}'
    )


def test_rng_source_and_ensd_are_written_as_a1111_does_and_read_back() -> None:
    gpu = Txt2ImgRequest(prompt="p", sampler_name="Euler", randn_source="GPU", eta_noise_seed_delta=31337)
    params = txt2img_parameters(gpu, seed=1, subseed=1, model_name=None, model_hash=None)
    # GPU is A1111's default, so it is not written; ENSD changes nothing for a sampler without per-step noise.
    assert params["RNG"] is None and params["ENSD"] is None
    text = "p\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, ENSD: 31337, RNG: GPU"
    request = request_from_infotext(text)
    assert (request.eta_noise_seed_delta, request.randn_source) == (31337, "GPU")
    assert request_from_infotext("p\nSteps: 3, Seed: 1, Size: 64x64").randn_source == "CPU"


def test_our_infotext_round_trips() -> None:
    request = Txt2ImgRequest(prompt="line one\nline two: with colon", negative_prompt="bad, worse",
                             sampler_name="DDIM", num_inference_steps=33, guidance_scale=4.5, seed=77,
                             seed_resize_from_w=256, seed_resize_from_h=320, width=320, height=256, eta=0.3)
    params = txt2img_parameters(request, seed=77, subseed=78, model_name="m", model_hash="abcdef0123")
    back = request_from_infotext(build_infotext(request.prompt, request.negative_prompt, params))
    for name in ("prompt", "negative_prompt", "sampler_name", "scheduler", "num_inference_steps",
                 "guidance_scale", "seed", "width", "height", "seed_resize_from_w", "seed_resize_from_h", "eta"):
        assert getattr(back, name) == getattr(request, name), name


def test_distilled_cfg_scale_follows_cfg_scale_only_when_the_job_has_one() -> None:
    flux = Txt2ImgRequest(prompt="p", sampler_name="Euler", guidance_scale=1.0, distilled_cfg_scale=3.5, seed=1)
    params = txt2img_parameters(flux, seed=1, subseed=1, model_name="flux1-dev", model_hash=None)
    text = build_infotext(flux.prompt, "", params)
    assert "CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1," in text
    back = request_from_infotext(text)
    assert back.distilled_cfg_scale == 3.5 and back.guidance_scale == 1.0
    fractional = Txt2ImgRequest(prompt="p", distilled_cfg_scale=2.7)
    text = build_infotext("p", "", txt2img_parameters(fractional, seed=1, subseed=1, model_name=None, model_hash=None))
    assert request_from_infotext(text).distilled_cfg_scale == 2.7
    # Not given (SD jobs from the API/CLI): no key, and an infotext without it reads back as not given.
    plain = txt2img_parameters(Txt2ImgRequest(prompt="p"), seed=1, subseed=1, model_name=None, model_hash=None)
    assert "Distilled CFG Scale" not in build_infotext("p", "", plain)
    assert request_from_infotext("p\nSteps: 3, CFG scale: 7, Seed: 1, Size: 64x64").distilled_cfg_scale is None


def test_distilled_cfg_scale_is_pasted_and_read_from_the_api_infotext_field() -> None:
    forge = "a fox\nSteps: 20, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 4.5, Seed: 7, Size: 64x64"
    assert txt2img_values_from_infotext(forge)["distilled_cfg_scale"] == 4.5
    # An SD image puts the UI's slider back to Forge's default, as a missing CFG scale does to 7.
    assert txt2img_values_from_infotext("a fox\nSteps: 20, Seed: 7, Size: 64x64")["distilled_cfg_scale"] == 3.5
    assert apply_payload_infotext({"infotext": forge})["distilled_cfg_scale"] == 4.5
    assert "distilled_cfg_scale" not in apply_payload_infotext({"infotext": "a fox\nSteps: 20, Seed: 7"})
    assert apply_payload_infotext({"infotext": forge, "distilled_cfg_scale": 2.0})["distilled_cfg_scale"] == 2.0


def test_flux_parts_are_recorded_as_forge_module_keys_and_read_back() -> None:
    parts = module_parameters(("ae.safetensors", "flux/clip_l.safetensors", "t5xxl_fp16.safetensors"))
    assert parts == {"Module 1": "ae", "Module 2": "clip_l", "Module 3": "t5xxl_fp16"}
    assert module_parameters(()) == {}  # SD checkpoints and all-in-one files carry their own parts
    request = Txt2ImgRequest(prompt="p", sampler_name="Euler", distilled_cfg_scale=3.5, seed=1)
    text = build_infotext("p", "", txt2img_parameters(request, seed=1, subseed=1, model_name="flux1-dev",
                                                      model_hash=None, extra=parts))
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16, Version:" in text
    assert request_from_infotext(text).modules == ("ae", "clip_l", "t5xxl_fp16")
    overrides = apply_payload_infotext({"infotext": text})["override_settings"]
    assert overrides["forge_additional_modules"] == ["ae", "clip_l", "t5xxl_fp16"]
    assert modules_from_params({"Module 1": "ae", "Module 3": "t5xxl_fp16"}) == ("ae",)  # numbered from 1, no gap
    assert request_from_infotext("p\nSteps: 3, Seed: 1, Size: 64x64").modules is None


def test_quote_only_when_needed() -> None:
    assert quote("Euler a") == "Euler a"
    assert quote("a, b") == '"a, b"'
    assert quote('say "hi": now') == '"say \\"hi\\": now"'


def test_replay_from_saved_png_is_bit_identical(sd15_model: LoadedModel, outputs_dir) -> None:
    request = Txt2ImgRequest(prompt="a purple ring", negative_prompt="noise, blur", width=64, height=64,
                             num_inference_steps=4, seed=-1, sampler_name="Euler a", subseed=3,
                             subseed_strength=0.3)
    first = run_txt2img(sd15_model, Job(request), OutputOptions(outputs_dir / "txt2img-images"))
    saved = Image.open(first.paths[0])
    infotext = saved.info["parameters"]
    assert infotext == first.infotexts[0]
    replay = run_txt2img(sd15_model, Job(request_from_infotext(infotext)))
    assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(replay.images[0]))
    assert replay.infotexts[0] == infotext
