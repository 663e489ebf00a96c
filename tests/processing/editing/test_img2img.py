"""img2img and inpainting end to end on tiny models: what changes and what must not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.models.hashing import HashCache
from modules.models.loader import LoadedModel
from modules.models.manager import ModelManager
from modules.models.registry import CheckpointRegistry
from modules.processing.editing.img2img import EMPTY_MASK_NOTICE, run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.generation.txt2img import OutputOptions
from modules.processing.jobs.job import Job, ProgressUpdate
from modules.processing.output.infotext import parse_infotext
from tests.conftest import CPU_FP32
from tests.tiny_models import write_tiny_checkpoint


def _picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A structured input: a gradient with a dark box, so any change is visible."""
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    array = np.stack([np.tile(x, (size[1], 1)), np.tile(x[::-1], (size[1], 1)),
                      np.full((size[1], size[0]), 90, np.uint8)], axis=-1)
    image = Image.fromarray(array)
    ImageDraw.Draw(image).rectangle((10, 10, 25, 30), fill=(20, 20, 20))
    return image


def _box_mask(box: tuple[int, int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def _request(**fields: object) -> Img2ImgRequest:
    base: dict[str, object] = {"prompt": "a green circle", "width": 64, "height": 64, "num_inference_steps": 4,
                               "seed": 5, "sampler_name": "Euler a", "init_images": (_picture(),)}
    base.update(fields)
    return Img2ImgRequest(**base)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_strength_zero_returns_the_input(sd15_model: LoadedModel) -> None:
    result = run_img2img(sd15_model, Job(_request(strength=0.0)))
    assert np.array_equal(_pixels(result.images[0]), _pixels(_picture()))
    assert "Denoising strength: 0" in result.infotexts[0]


def test_strength_sets_how_many_steps_run(sd15_model: LoadedModel) -> None:
    updates: list[ProgressUpdate] = []
    run_img2img(sd15_model, Job(_request(num_inference_steps=10, strength=0.5), on_progress=updates.append))
    assert [u.step for u in updates] == [1, 2, 3, 4, 5] and updates[-1].total_steps == 5


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "DDIM", "Heun"])
def test_lower_strength_stays_closer_to_the_input(sd15_model: LoadedModel, sampler: str) -> None:
    source = _pixels(_picture())
    low = run_img2img(sd15_model, Job(_request(strength=0.3, sampler_name=sampler)))
    high = run_img2img(sd15_model, Job(_request(strength=1.0, sampler_name=sampler)))
    low_error = np.abs(_pixels(low.images[0]) - source).mean()
    high_error = np.abs(_pixels(high.images[0]) - source).mean()
    assert low.images[0].size == (64, 64) and low_error < high_error


def test_inpaint_masked_keeps_every_pixel_outside_the_blurred_mask(sd15_model: LoadedModel) -> None:
    mask = _box_mask((30, 30, 50, 50))
    result = run_img2img(sd15_model, Job(_request(mask=mask, mask_blur_x=2, mask_blur_y=2, strength=1.0)))
    out, source = _pixels(result.images[0]), _pixels(_picture())
    outside = np.ones((64, 64), bool)
    outside[30 - 8:50 + 9, 30 - 8:50 + 9] = False  # the box and its blurred edge
    assert np.array_equal(out[outside], source[outside])
    assert np.abs(out[35:46, 35:46] - source[35:46, 35:46]).mean() > 5  # the masked area was repainted
    params = parse_infotext(result.infotexts[0])
    assert params["Mask blur"] == "2" and params["Mask mode"] == "Inpaint masked"
    assert params["Masked content"] == "original" and "Inpaint area" not in params


def test_inpaint_not_masked_changes_only_the_outside(sd15_model: LoadedModel) -> None:
    mask = _box_mask((16, 16, 47, 47))
    result = run_img2img(sd15_model, Job(_request(mask=mask, mask_blur_x=0, mask_blur_y=0, strength=1.0,
                                                  inpaint_not_masked=True)))
    out, source = _pixels(result.images[0]), _pixels(_picture())
    assert np.array_equal(out[16:48, 16:48], source[16:48, 16:48])
    assert np.abs(out[:8] - source[:8]).mean() > 5
    assert "Mask mode: Inpaint not masked" in result.infotexts[0]


def test_only_masked_touches_only_the_padded_crop(sd15_model: LoadedModel) -> None:
    source_image = _picture((96, 96))
    mask = _box_mask((60, 60, 70, 70), (96, 96))
    request = _request(init_images=(source_image,), mask=mask, mask_blur_x=0, mask_blur_y=0, strength=1.0,
                       inpaint_only_masked=True, only_masked_padding=8)
    result = run_img2img(sd15_model, Job(request))
    out, source = _pixels(result.images[0]), _pixels(source_image)
    assert result.images[0].size == (96, 96)  # the input's size, not width x height
    changed = np.argwhere(np.any(out != source, axis=-1))
    assert changed.size and changed.min() >= 60 - 8 and changed.max() <= 70 + 8
    params = parse_infotext(result.infotexts[0])
    assert params["Inpaint area"] == "Only masked" and params["Masked area padding"] == "8"


@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_masked_content_choices_start_differently(sd15_model: LoadedModel, content: str) -> None:
    mask = _box_mask((20, 20, 44, 44))
    original = run_img2img(sd15_model, Job(_request(mask=mask, strength=0.5, masked_content="original")))
    other = run_img2img(sd15_model, Job(_request(mask=mask, strength=0.5, masked_content=content)))
    assert not np.array_equal(_pixels(original.images[0]), _pixels(other.images[0]))
    assert f"Masked content: {content}" in other.infotexts[0]


def test_empty_mask_returns_the_input_with_a_notice(sd15_model: LoadedModel) -> None:
    result = run_img2img(sd15_model, Job(_request(mask=Image.new("L", (64, 64), 0))))
    assert result.notices == [EMPTY_MASK_NOTICE]
    assert np.array_equal(_pixels(result.images[0]), _pixels(_picture()))


def test_mask_of_another_size_is_stretched_to_the_image(sd15_model: LoadedModel) -> None:
    small_mask = _box_mask((16, 16, 31, 31), (32, 32))  # the lower-right quarter, at half size
    result = run_img2img(sd15_model, Job(_request(mask=small_mask, mask_blur_x=0, mask_blur_y=0, strength=1.0)))
    out, source = _pixels(result.images[0]), _pixels(_picture())
    assert np.array_equal(out[:28], source[:28]) and np.array_equal(out[:, :28], source[:, :28])
    assert np.abs(out[36:, 36:] - source[36:, 36:]).mean() > 5


def test_batch_cycles_inputs_and_saves_to_img2img_folder(sd15_model: LoadedModel, outputs_dir) -> None:
    inputs = (_picture(), _picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    request = _request(init_images=inputs, batch_size=2, batch_count=2, strength=0.4)
    result = run_img2img(sd15_model, Job(request), OutputOptions(outputs_dir / "img2img-images"))
    assert len(result.images) == 4 and result.seeds == [5, 6, 7, 8]
    assert result.paths[0].parent.parent == outputs_dir / "img2img-images"
    assert Image.open(result.paths[3]).info["parameters"] == result.infotexts[3]


def test_latent_upscale_mode_encodes_at_the_input_size(sd15_model: LoadedModel) -> None:
    result = run_img2img(sd15_model, Job(_request(init_images=(_picture((32, 32)),), width=64, height=64,
                                                  resize_mode="Just resize (latent upscale)", strength=0.6)))
    assert result.images[0].size == (64, 64)


def test_sdxl_img2img_runs(sdxl_model: LoadedModel) -> None:
    result = run_img2img(sdxl_model, Job(_request(strength=0.5, mask=_box_mask((0, 0, 31, 63)))))
    assert result.images[0].size == (64, 64)
    assert np.array_equal(_pixels(result.images[0])[:, 44:], _pixels(_picture())[:, 44:])


def test_nine_channel_inpainting_model_keeps_the_outside(tmp_path) -> None:
    write_tiny_checkpoint(tmp_path, "sd15_inpaint")
    manager = ModelManager(CheckpointRegistry([tmp_path], HashCache(tmp_path / "h.json")), CPU_FP32)
    model = manager.get("tiny-sd15_inpaint")
    mask = _box_mask((24, 24, 40, 40))
    result = run_img2img(model, Job(_request(mask=mask, mask_blur_x=0, mask_blur_y=0, strength=1.0)))
    out, source = _pixels(result.images[0]), _pixels(_picture())
    assert np.array_equal(out[:20], source[:20])
    assert np.abs(out[26:39, 26:39] - source[26:39, 26:39]).mean() > 5
    plain = run_img2img(model, Job(_request(strength=0.5)))  # img2img (no mask) on the same model
    assert plain.images[0].size == (64, 64) and "Mask blur" not in plain.infotexts[0]
