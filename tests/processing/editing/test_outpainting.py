"""Outpainting scripts: the canvas grows on the chosen sides and only the new bands change."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.models.loader import LoadedModel
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.editing.outpainting import apply_outpaint_script
from modules.processing.errors import RequestValidationError
from modules.processing.intake.api_fields_img2img import img2img_request_from_api
from modules.processing.jobs.job import Job


def _source() -> Image.Image:
    array = np.zeros((64, 64, 3), np.uint8)
    array[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
    array[..., 2] = 120
    return Image.fromarray(array)


def _request(**fields: object) -> Img2ImgRequest:
    return Img2ImgRequest(prompt="sky", init_images=(_source(),), width=64, height=64, num_inference_steps=3,
                          seed=4, sampler_name="Euler a", strength=0.9, **fields)


@pytest.mark.parametrize("script", ["Poor man's outpainting", "Outpainting mk2"])
def test_only_the_new_bands_are_painted(sd15_model: LoadedModel, script: str) -> None:
    args = {"pixels": 32, "mask_blur": 0, "direction": ["left", "down"]}
    request = apply_outpaint_script(_request(), script, args)
    assert (request.width, request.height) == (96, 96) and request.mask is not None
    out = np.asarray(run_img2img(sd15_model, Job(request)).images[0])
    assert out.shape == (96, 96, 3)
    assert np.array_equal(out[:64, 32:], np.asarray(_source()))  # the original, moved right
    assert out[70:, :].std() > 0 and out[:, :24].std() > 0


def test_a1111_positional_script_args_through_the_api() -> None:
    buffer_image = _source()
    request = img2img_request_from_api({
        "init_images": [buffer_image], "script_name": "outpainting MK2",
        "script_args": ["<p>info</p>", 16, 8, ["up"], 1.0, 0.05],
    })
    assert (request.width, request.height) == (64, 80) and request.masked_content == "original"
    poor = img2img_request_from_api({"init_images": [buffer_image], "script_name": "Poor man's outpainting",
                                     "script_args": [8, 4, 2, ["right"]]})
    assert poor.width == 72 and poor.masked_content == "latent noise"


@pytest.mark.parametrize(("payload", "field"), [
    ({"script_name": "Loopback"}, "script_name"),
    ({"script_name": "Poor man's outpainting", "script_args": [4]}, "script_args.pixels"),
    ({"script_name": "Poor man's outpainting", "script_args": {"direction": ["north"]}}, "script_args.direction"),
    ({"script_name": "Outpainting mk2", "script_args": {"size": 3}}, "script_args"),
])
def test_bad_script_arguments_are_named(payload: dict, field: str) -> None:
    with pytest.raises(RequestValidationError) as error:
        img2img_request_from_api({"init_images": [_source()], **payload})
    assert error.value.field == field
