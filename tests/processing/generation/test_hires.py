"""Hires. fix: the second pass's size, settings, infotext and progress, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.errors import RequestValidationError
from modules.processing.generation.hires import HiresFix, upscale_latents
from modules.processing.generation.txt2img import run_txt2img
from modules.processing.intake.api_fields import txt2img_request_from_api
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.output.infotext import parse_infotext
from modules.processing.requests import Txt2ImgRequest
from modules.processing.sampling.hooks import StepHook, StepParams


def _request(hires: HiresFix | None, **fields: object) -> Txt2ImgRequest:
    base = {"prompt": "a small yellow star", "width": 64, "height": 64, "num_inference_steps": 4, "seed": 9,
            "sampler_name": "Euler", "hires": hires}
    base.update(fields)
    return Txt2ImgRequest(**base)


@pytest.mark.parametrize(("hires", "first", "expected"), [
    (HiresFix(scale=2.0), (64, 48), (128, 96, 128, 96)),
    (HiresFix(scale=1.5), (64, 64), (96, 96, 96, 96)),
    (HiresFix(resize_x=96), (64, 48), (96, 72, 96, 72)),        # one side: the aspect ratio is kept
    (HiresFix(resize_y=96), (64, 48), (128, 96, 128, 96)),
    (HiresFix(resize_x=96, resize_y=96), (64, 48), (128, 96, 96, 96)),  # both: cover, then crop to fit
])
def test_target_size_follows_a1111(hires: HiresFix, first: tuple[int, int], expected: tuple) -> None:
    assert hires.target_size(*first) == expected


def test_steps_of_the_second_pass() -> None:
    assert HiresFix(denoising_strength=0.5).steps_to_run(20) == (20, 10)
    assert HiresFix(steps=10, denoising_strength=0.7).steps_to_run(20) == (10, 7)
    assert HiresFix(denoising_strength=0.0).steps_to_run(20) == (20, 0)


def test_latent_upscale_crops_the_surplus_evenly() -> None:
    latents = np.arange(6 * 8, dtype=np.float32).reshape(1, 1, 6, 8)
    import torch

    out = upscale_latents(torch.from_numpy(latents), "Latent (nearest)", 128, 96, 96, 96)
    assert tuple(out.shape) == (1, 1, 12, 12)
    # 16 columns at the cover size, 2 cropped from each side: the first kept column is source column 1
    assert out[0, 0, 0, 0].item() == latents[0, 0, 0, 1]


def test_latent_hires_doubles_the_size_and_writes_a1111_infotext(sd15_model: LoadedModel) -> None:
    updates: list[ProgressUpdate] = []
    result = run_txt2img(sd15_model, Job(_request(HiresFix(denoising_strength=0.5)), on_progress=updates.append))
    assert result.images[0].size == (128, 128)
    info = parse_infotext(result.infotexts[0])
    assert info["Size"] == "64x64"  # the first pass's size, as A1111 writes it
    assert (info["Hires upscale"], info["Hires upscaler"], info["Denoising strength"]) == ("2", "Latent", "0.5")
    # 4 first-pass steps, then int(4 * 0.5) = 2 hires steps, counted on
    assert [u.step for u in updates] == [1, 2, 3, 4, 5, 6] and updates[-1].fraction == 1.0


def test_image_upscaler_goes_through_the_callers_upscale(sd15_model: LoadedModel) -> None:
    calls: list[tuple[str, int, int]] = []

    def upscale(image: Image.Image, name: str, width: int, height: int) -> Image.Image:
        calls.append((name, width, height))
        return image.resize((width, height), Image.Resampling.BICUBIC)

    hires = HiresFix(upscaler="4x-tiny", resize_x=128, resize_y=128, denoising_strength=0.5, steps=2)
    result = run_txt2img(sd15_model, Job(_request(hires, width=96, height=64, batch_size=2)), upscale=upscale)
    assert calls == [("4x-tiny", 192, 128), ("4x-tiny", 192, 128)]
    assert [image.size for image in result.images] == [(128, 128), (128, 128)]
    info = parse_infotext(result.infotexts[1])
    assert (info["Hires resize"], info["Hires steps"], info["Hires upscaler"]) == ("128x128", "2", "4x-tiny")


def test_without_upscalers_lanczos_works_and_a_model_name_is_refused(sd15_model: LoadedModel) -> None:
    result = run_txt2img(sd15_model, Job(_request(HiresFix(upscaler="Lanczos", scale=1.5, denoising_strength=0.3))))
    assert result.images[0].size == (96, 96)
    with pytest.raises(RequestValidationError) as error:
        run_txt2img(sd15_model, Job(_request(HiresFix(upscaler="ESRGAN_4x"))))
    assert error.value.field == "hr_upscaler"


def test_hires_prompt_and_strength_change_the_second_pass(sd15_model: LoadedModel) -> None:
    def pixels(hires: HiresFix) -> np.ndarray:
        return np.asarray(run_txt2img(sd15_model, Job(_request(hires))).images[0], dtype=np.int16)

    plain = pixels(HiresFix(denoising_strength=0.6))
    # The tiny random model barely listens to text, so any change shows the hires prompt was used.
    assert not np.array_equal(plain, pixels(HiresFix(denoising_strength=0.6, prompt="a blue square")))
    assert np.abs(plain - pixels(HiresFix(denoising_strength=0.9))).mean() > 1
    assert np.array_equal(plain, pixels(HiresFix(denoising_strength=0.6)))  # deterministic


def test_api_fields_build_the_hires_settings() -> None:
    request = txt2img_request_from_api({
        "prompt": "x", "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent (bicubic)",
        "denoising_strength": 0.4,
        "hr_second_pass_steps": 0, "hr_sampler_name": "Use same sampler", "hr_scheduler": "Use same scheduler",
        "hr_prompt": "", "hr_negative_prompt": "", "hr_resize_x": 0, "hr_resize_y": 0,
        "hr_checkpoint_name": "Use same checkpoint"})
    assert request.hires == HiresFix(upscaler="Latent (bicubic)", scale=1.5, denoising_strength=0.4)
    off = txt2img_request_from_api({"prompt": "x", "enable_hr": False, "hr_scale": 2, "denoising_strength": 0.7})
    assert off.hires is None


def test_infotext_round_trips_the_hires_settings() -> None:
    from modules.processing.output.infotext import build_infotext
    from modules.processing.output.request_infotext import (
        request_from_infotext,
        txt2img_parameters,
        txt2img_values_from_infotext,
    )

    hires = HiresFix(upscaler="Lanczos", resize_x=128, resize_y=96, steps=5, denoising_strength=0.35,
                     sampler_name="Euler", prompt="detailed")
    request = _request(hires)
    text = build_infotext(request.prompt, "", txt2img_parameters(request, 9, 9, "m", "abc"))
    assert "Hires resize: 128x96" in text and "Hires prompt: detailed" in text
    assert request_from_infotext(text).hires == hires
    values = txt2img_values_from_infotext(text)
    assert (values["enable_hr"], values["hr_resize_x"], values["hr_scheduler"]) == (True, 128, "Use same scheduler")
    assert txt2img_values_from_infotext(build_infotext("x", "", {"Steps": 3}))["enable_hr"] is False


class _GuidanceRecorder(StepHook):
    """Records the CFG scale each model call is guided with."""

    def __init__(self) -> None:
        self.scales: list[float] = []

    def before_step(self, step: StepParams) -> None:
        self.scales.append(step.guidance_scale)


def test_hires_cfg_scale_guides_the_second_pass_and_is_recorded(sd15_model: LoadedModel) -> None:
    # Forge's "Hires CFG Scale": unset (and the first pass's value) leave the image as it was.
    def run(hires: HiresFix, recorder: StepHook | None = None) -> tuple[np.ndarray, str]:
        job = Job(_request(hires, guidance_scale=7.0, negative_prompt="blurry"), hooks=[recorder] if recorder else [])
        result = run_txt2img(sd15_model, job)
        return np.asarray(result.images[0], dtype=np.int16), result.infotexts[0]

    plain, plain_text = run(HiresFix(denoising_strength=0.6))
    assert "Hires CFG Scale" not in plain_text
    same, same_text = run(HiresFix(denoising_strength=0.6, guidance_scale=7.0))
    assert np.array_equal(same, plain) and "Hires CFG Scale: 7," in same_text
    recorder = _GuidanceRecorder()
    stronger, stronger_text = run(HiresFix(denoising_strength=0.6, guidance_scale=20.0), recorder)
    assert recorder.scales == [7.0] * 4 + [20.0] * 2  # 4 first-pass steps, int(4 * 0.6) hires steps
    assert not np.array_equal(stronger, plain)  # the tiny model barely listens to text: a small change
    assert parse_infotext(stronger_text)["Hires CFG Scale"] == "20"
    assert parse_infotext(stronger_text)["CFG scale"] == "7"  # the first pass keeps its own
    # SD has no distilled guidance input: the value is dropped, not recorded as if used
    dropped, dropped_text = run(HiresFix(denoising_strength=0.6, distilled_cfg_scale=2.0))
    assert np.array_equal(dropped, plain) and "Distilled" not in dropped_text


@pytest.mark.parametrize(("field", "value"), [("guidance_scale", 0.5), ("guidance_scale", 31.0),
                                              ("distilled_cfg_scale", -1.0), ("guidance_scale", "7")])
def test_out_of_range_hires_guidance_names_its_api_field(field: str, value: object) -> None:
    with pytest.raises(RequestValidationError) as error:
        HiresFix(**{field: value})
    assert error.value.field == {"guidance_scale": "hr_cfg", "distilled_cfg_scale": "hr_distilled_cfg"}[field]


def test_api_hires_guidance_zero_or_absent_means_the_first_pass() -> None:
    base = {"prompt": "x", "enable_hr": True, "denoising_strength": 0.5}
    assert txt2img_request_from_api(base).hires.guidance_scale is None
    forge = txt2img_request_from_api({**base, "hr_cfg": 0, "hr_distilled_cfg": 0,
                                      "hr_additional_modules": ["Use same choices"]})
    assert (forge.hires.guidance_scale, forge.hires.distilled_cfg_scale) == (None, None)
    own = txt2img_request_from_api({**base, "hr_cfg": 4.5, "hr_distilled_cfg": 2.0, "hr_additional_modules": []})
    assert (own.hires.guidance_scale, own.hires.distilled_cfg_scale) == (4.5, 2.0)
    with pytest.raises(RequestValidationError) as error:
        txt2img_request_from_api({**base, "hr_additional_modules": ["ae.safetensors"]})
    assert error.value.field == "hr_additional_modules"
    with pytest.raises(RequestValidationError) as error:
        txt2img_request_from_api({**base, "hr_cfg": 99})
    assert error.value.field == "hr_cfg"


def test_hires_guidance_round_trips_through_the_infotext() -> None:
    from modules.processing.output.infotext import build_infotext
    from modules.processing.output.request_infotext import (
        request_from_infotext,
        txt2img_parameters,
        txt2img_values_from_infotext,
    )

    hires = HiresFix(denoising_strength=0.5, guidance_scale=4.0, distilled_cfg_scale=2.5)
    text = build_infotext("x", "", txt2img_parameters(_request(hires), 9, 9, "m", "abc"))
    assert "Hires CFG Scale: 4," in text and "Hires Distilled CFG Scale: 2.5" in text
    assert request_from_infotext(text).hires == hires
    values = txt2img_values_from_infotext(text)
    assert (values["hr_cfg"], values["hr_distilled_cfg"]) == (4.0, 2.5)
    unset = txt2img_values_from_infotext(build_infotext("x", "", txt2img_parameters(
        _request(HiresFix(denoising_strength=0.5)), 9, 9, "m", "abc")))
    assert (unset["hr_cfg"], unset["hr_distilled_cfg"]) == (0.0, 0.0)  # the sliders' "use same"
