"""The procedural training data: deterministic, captioned as drawn, and hold-out respected."""

from __future__ import annotations

import random

import numpy as np

from modules.demo.scenes import (
    COLOURS,
    Scene,
    SceneObject,
    caption,
    evaluation_scenes,
    is_held_out,
    render,
    sample_scene,
)


def test_same_seed_gives_same_scenes_and_pixels() -> None:
    def draw(seed: int) -> list[tuple[str, bytes]]:
        rng = random.Random(seed)
        return [(caption(s), render(s, jitter=rng).tobytes()) for s in (sample_scene(rng) for _ in range(20))]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_caption_names_what_is_drawn() -> None:
    scene = Scene((SceneObject("red", "circle", "large", "center"),), "blue")
    assert caption(scene) == "a large red circle in the center on a blue background"
    pixels = np.asarray(render(scene))
    assert tuple(pixels[64, 64]) == COLOURS["red"]
    assert tuple(pixels[2, 2]) == COLOURS["blue"]


def test_articles_and_two_tone_backgrounds() -> None:
    scene = Scene((SceneObject("orange", "star", "small", "top left"),), "white", "black", "horizontal",
                  mention_size=False)
    assert caption(scene) == "an orange star at the top left on a white and black background"
    pixels = np.asarray(render(scene))
    assert tuple(pixels[5, 64]) == COLOURS["white"] and tuple(pixels[120, 64]) == COLOURS["black"]


def test_position_is_drawn_in_the_named_third() -> None:
    scene = Scene((SceneObject("yellow", "square", "small", "bottom right"),), "purple")
    ys, xs = np.nonzero((np.asarray(render(scene)) == COLOURS["yellow"]).all(axis=2))
    assert xs.min() > 128 * 2 / 3 - 10 and ys.min() > 128 * 2 / 3 - 10


def test_training_never_draws_a_held_out_combination() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        scene = sample_scene(rng)
        if len(scene.objects) == 1 and scene.background2 is None:
            assert not is_held_out(scene.objects[0], scene.background)


def test_evaluation_scenes_are_held_out_plain_and_plentiful() -> None:
    scenes = evaluation_scenes()
    assert len(scenes) >= 100
    assert all(len(s.objects) == 1 and s.background2 is None for s in scenes)
    assert all(is_held_out(s.objects[0], s.background) and s.objects[0].colour != s.background for s in scenes)
    assert len({s.objects[0].shape for s in scenes}) == 6 and len({s.objects[0].colour for s in scenes}) == 8
