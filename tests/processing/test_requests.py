"""Request validation: every bad value is refused with an error naming the field."""

from __future__ import annotations

import math

import pytest

from modules.processing.api_fields import txt2img_request_from_api
from modules.processing.errors import RequestValidationError
from modules.processing.requests import Txt2ImgRequest


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"width": 63}, "width"),
        ({"width": 2056}, "width"),
        ({"height": 100}, "height"),
        ({"num_inference_steps": 0}, "steps"),
        ({"num_inference_steps": 151}, "steps"),
        ({"num_inference_steps": 2.5}, "steps"),
        ({"guidance_scale": math.nan}, "cfg_scale"),
        ({"guidance_scale": math.inf}, "cfg_scale"),
        ({"guidance_scale": 31}, "cfg_scale"),
        ({"seed": -2}, "seed"),
        ({"seed": True}, "seed"),
        ({"subseed_strength": 1.5}, "subseed_strength"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 9}, "batch_size"),
        ({"batch_count": 101}, "n_iter"),
        ({"clip_skip": 0}, "clip_skip"),
        ({"sampler_name": "Nope"}, "sampler_name"),
        ({"scheduler": "Weird"}, "scheduler"),
        ({"sampler_name": "Euler a", "scheduler": "Karras"}, "scheduler"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"eta": -0.1}, "eta"),
        ({"tiling": "yes"}, "tiling"),
    ],
)
def test_invalid_values_name_the_field(fields: dict, field_name: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        Txt2ImgRequest(**fields)
    assert caught.value.field == field_name
    assert field_name in str(caught.value)


def test_defaults_are_a1111_like_and_valid() -> None:
    request = Txt2ImgRequest(prompt="a cat")
    assert (request.width, request.height, request.num_inference_steps) == (512, 512, 20)
    assert request.sampler_name == "DPM++ 2M" and request.scheduler == "Automatic"


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
        ("dpm++ 2m sde exponential", "Automatic", ("DPM++ 2M SDE", "Exponential")),
        ("k_euler_a", "Automatic", ("Euler a", "Automatic")),
        ("DPM++ 2M Karras", "Uniform", ("DPM++ 2M", "Uniform")),
        ("euler", "sgm uniform", ("Euler", "SGM Uniform")),
    ],
)
def test_old_combined_names_and_aliases_are_accepted(sampler: str, scheduler: str, expected: tuple) -> None:
    request = Txt2ImgRequest(sampler_name=sampler, scheduler=scheduler)
    assert (request.sampler_name, request.scheduler) == expected


def test_request_is_frozen() -> None:
    request = Txt2ImgRequest()
    with pytest.raises(AttributeError):
        request.width = 64  # type: ignore[misc]


def test_api_payload_uses_a1111_names() -> None:
    request = txt2img_request_from_api(
        {"prompt": "p", "steps": 7, "cfg_scale": 4.5, "n_iter": 2, "sampler_name": None, "scheduler": None,
         "send_images": True, "override_settings": {"sd_model_checkpoint": "m", "CLIP_stop_at_last_layers": 2}}
    )
    assert (request.num_inference_steps, request.guidance_scale, request.batch_count) == (7, 4.5, 2)
    assert (request.checkpoint, request.clip_skip) == ("m", 2)
    assert request.sampler_name == "DPM++ 2M"


@pytest.mark.parametrize(
    ("payload", "field_name"),
    [
        ({"stepz": 3}, "stepz"),
        ({"steps": "many"}, "steps"),
        ({"enable_hr": "yes"}, "enable_hr"),
        ({"enable_hr": True, "hr_scale": 20}, "hr_scale"),
        ({"enable_hr": True, "hr_sampler_name": "Euler z"}, "hr_sampler_name"),
        ({"enable_hr": True, "hr_second_pass_steps": -1}, "hr_second_pass_steps"),
        ({"enable_hr": True, "hr_checkpoint_name": "other.safetensors"}, "hr_checkpoint_name"),
        ({"override_settings": {"outdir_samples": "/etc"}}, "override_settings.outdir_samples"),
    ],
)
def test_api_payload_errors_name_the_field(payload: dict, field_name: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        txt2img_request_from_api(payload)
    assert caught.value.field == field_name
