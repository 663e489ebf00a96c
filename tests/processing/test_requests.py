"""Request validation: every bad value is refused with an error naming the field."""

from __future__ import annotations

import math

import pytest

from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields import (
    TXT2IMG_API_FIELDS,
    payload_notices,
    txt2img_request_from_api,
    unknown_fields,
)
from modules.processing.requests import DEFAULT_DISTILLED_CFG_SCALE, Txt2ImgRequest


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
        ({"sampler_name": "DDIM", "scheduler": "Karras"}, "scheduler"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "a\x00b"}, "prompt"),
        ({"eta": -0.1}, "eta"),
        ({"tiling": "yes"}, "tiling"),
        ({"distilled_cfg_scale": -0.1}, "distilled_cfg_scale"),
        ({"distilled_cfg_scale": 30.5}, "distilled_cfg_scale"),
        ({"distilled_cfg_scale": math.nan}, "distilled_cfg_scale"),
        ({"distilled_cfg_scale": "3.5"}, "distilled_cfg_scale"),
        ({"distilled_cfg_scale": True}, "distilled_cfg_scale"),
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


def test_distilled_cfg_scale_is_unset_by_default_and_takes_forges_range() -> None:
    # None means "not given": the engine uses the family's default on FLUX.1-dev, others ignore it.
    assert Txt2ImgRequest().distilled_cfg_scale is None
    assert DEFAULT_DISTILLED_CFG_SCALE == 3.5
    for value in (0, 0.0, 3.5, 30):
        assert Txt2ImgRequest(distilled_cfg_scale=value).distilled_cfg_scale == value


def test_api_reads_distilled_cfg_scale_as_a_number_or_null() -> None:
    assert txt2img_request_from_api({"prompt": "p", "distilled_cfg_scale": 2.5}).distilled_cfg_scale == 2.5
    assert txt2img_request_from_api({"prompt": "p", "distilled_cfg_scale": None}).distilled_cfg_scale is None
    assert txt2img_request_from_api({"prompt": "p"}).distilled_cfg_scale is None
    assert unknown_fields({"distilled_cfg_scale": 3.5}, TXT2IMG_API_FIELDS, "txt2img") == []
    for bad in ("high", 31, -1, [3.5]):
        with pytest.raises(RequestValidationError) as caught:
            txt2img_request_from_api({"prompt": "p", "distilled_cfg_scale": bad})
        assert caught.value.field == "distilled_cfg_scale"


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
        ({"steps": "many"}, "steps"),
        ({"send_images": "yes"}, "send_images"),
        ({"s_churn": "lots"}, "s_churn"),
        ({"refiner_checkpoint": "xl-refiner"}, "refiner_checkpoint"),
        ({"enable_hr": "yes"}, "enable_hr"),
        ({"enable_hr": True, "hr_scale": 20}, "hr_scale"),
        ({"enable_hr": True, "hr_sampler_name": "Euler z"}, "hr_sampler_name"),
        ({"enable_hr": True, "hr_second_pass_steps": -1}, "hr_second_pass_steps"),
        ({"enable_hr": True, "hr_checkpoint_name": "other.safetensors"}, "hr_checkpoint_name"),
        ({"override_settings": ["CLIP_stop_at_last_layers"]}, "override_settings"),
        ({"override_settings": {"randn_source": "NV"}}, "randn_source"),
    ],
)
def test_api_payload_errors_name_the_field(payload: dict, field_name: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        txt2img_request_from_api(payload)
    assert caught.value.field == field_name


def test_unknown_fields_are_ignored_and_listed_known_ones_still_read() -> None:
    # Fields of other A1111/Forge versions: A1111's own reader ignores them, so does ours.
    payload = {"prompt": "p", "steps": 3, "seed_enable_extras": True, "hr_force": True,
               "override_settings": {"eta_noise_seed_delta": 31337, "randn_source": "GPU"}}
    request = txt2img_request_from_api(payload)
    assert (request.num_inference_steps, request.eta_noise_seed_delta, request.randn_source) == (3, 31337, "GPU")
    warnings = unknown_fields(payload, TXT2IMG_API_FIELDS, "txt2img")
    assert [w.split(":")[0] for w in warnings] == ["seed_enable_extras", "hr_force"]
    assert all("ignored" in w for w in warnings)


def test_features_not_here_are_notices_not_errors() -> None:
    payload = {"prompt": "p", "restore_faces": True}
    assert txt2img_request_from_api(payload).prompt == "p"
    assert [n.split(":")[0] for n in payload_notices(payload)] == ["restore_faces"]
    assert payload_notices({"restore_faces": False}) == []
