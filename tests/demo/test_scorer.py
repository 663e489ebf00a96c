"""The no-ML scorer reads back what the scene generator drew."""

from __future__ import annotations

import random

from PIL import Image, ImageFilter

from modules.demo.scenes import COLOURS, Scene, SceneObject, evaluation_scenes, render
from modules.demo.scorer import read_scene


def test_reads_every_attribute_of_drawn_scenes() -> None:
    scenes = evaluation_scenes()
    hits = 0
    for index, scene in enumerate(scenes):
        obj = scene.objects[0]
        reading = read_scene(render(scene, jitter=random.Random(index)))
        hits += (reading.colour, reading.shape, reading.position, reading.background) == \
            (obj.colour, obj.shape, obj.position, scene.background)
    assert hits / len(scenes) >= 0.99


def test_tolerates_blur_like_a_generated_image() -> None:
    scene = Scene((SceneObject("green", "star", "large", "left"),), "white")
    reading = read_scene(render(scene).filter(ImageFilter.GaussianBlur(2)))
    assert (reading.colour, reading.shape, reading.position, reading.background) == ("green", "star", "left", "white")


def test_tells_ring_from_circle_and_cross_from_square() -> None:
    for shape in ("ring", "circle", "cross", "square", "triangle"):
        scene = Scene((SceneObject("black", shape, "large", "center"),), "yellow")
        assert read_scene(render(scene)).shape == shape


def test_blank_image_has_no_object() -> None:
    reading = read_scene(Image.new("RGB", (128, 128), COLOURS["blue"]))
    assert reading.background == "blue"
    assert reading.colour is None and reading.shape is None and reading.position is None
