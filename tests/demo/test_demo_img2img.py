"""img2img and inpainting with the shipped demo model: the input's layout survives, and an
inpainted area takes the prompt's colour while the rest stays the input's own pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from modules.demo.scenes import COLOURS, Scene, SceneObject, caption, render
from modules.demo.scorer import read_scene
from modules.models.loader import LoadedModel
from modules.processing.editing.img2img import run_img2img
from modules.processing.editing.img2img_request import Img2ImgRequest
from modules.processing.jobs.job import Job

SCENES = [Scene((SceneObject(colour, "square", "large", position),), "blue")
          for colour, position in (("red", "left"), ("yellow", "top right"), ("white", "top left"),
                                   ("green", "bottom right"), ("black", "right"))]


def _run(model: LoadedModel, **fields: object) -> Image.Image:
    request = Img2ImgRequest(sampler_name="Euler a", num_inference_steps=20, width=128, height=128, **fields)
    return run_img2img(model, Job(request)).images[0]


def test_half_strength_keeps_position_and_colour(demo_model: LoadedModel) -> None:
    kept_position = kept_colour = 0
    for scene in SCENES:
        for seed in (1, 2):
            reading = read_scene(_run(demo_model, prompt=caption(scene), init_images=(render(scene),),
                                      strength=0.5, seed=seed))
            kept_position += reading.position == scene.objects[0].position
            kept_colour += reading.colour == scene.objects[0].colour
    # Measured: 10/10 positions, 8/10 colours (the model itself draws 83 % of colours right).
    assert kept_position >= 8 and kept_colour >= 7


def _colour_share(image: Image.Image, box: tuple[int, int, int, int], colour: str) -> float:
    region = np.asarray(image.crop(box), dtype=np.int16)
    return float((np.abs(region - COLOURS[colour]).sum(axis=-1) < 150).mean())


def test_inpainting_paints_the_mask_in_the_prompt_colour_and_nothing_else(demo_model: LoadedModel) -> None:
    source = render(Scene((SceneObject("red", "square", "small", "top left"),), "white"))
    box = (32, 32, 96, 96)
    mask = Image.new("L", source.size, 0)
    mask.paste(255, box)
    green, purple = [], []
    for seed in (1, 2, 3, 4):
        out = _run(demo_model, prompt="a green circle", init_images=(source,), mask=mask, strength=1.0, seed=seed)
        outside = np.ones((128, 128), bool)
        outside[box[1] - 12:box[3] + 12, box[0] - 12:box[2] + 12] = False  # the mask and its blurred edge
        assert np.array_equal(np.asarray(out)[outside], np.asarray(source)[outside])
        green.append(_colour_share(out, box, "green"))
        control = _run(demo_model, prompt="a purple circle", init_images=(source,), mask=mask, strength=1.0,
                       seed=seed)
        purple.append(_colour_share(control, box, "green"))
    # Measured: green covers 0.74/0.60/0.65/0.00 of the box; asking for purple gives no green.
    assert np.mean(green) > 0.3 and np.mean(purple) < 0.05


def test_prompt_weights_shift_the_colour(demo_model: LoadedModel) -> None:
    """``(red:1.6) circle`` comes out redder than ``(blue:1.6) circle`` on the same seeds."""
    from modules.processing.generation.txt2img import run_txt2img
    from modules.processing.requests import Txt2ImgRequest

    def red_minus_blue(word: str) -> float:
        total = 0.0
        for seed in (1, 2, 3, 4):
            request = Txt2ImgRequest(prompt=f"a large ({word}:1.6) circle on a white background", seed=seed,
                                     sampler_name="Euler a", num_inference_steps=20, width=128, height=128)
            pixels = np.asarray(run_txt2img(demo_model, Job(request)).images[0], dtype=np.float64)
            total += float((pixels[..., 0] - pixels[..., 2]).mean())
        return total / 4

    red, blue = red_minus_blue("red"), red_minus_blue("blue")
    # Measured: red +40, blue -15 (mean R - B over the image, 0-255 scale; unweighted: +37, -18).
    assert red - blue > 30, (red, blue)
