"""Procedural captioned scenes: the training data of the demo model.

A scene is one or two flat-coloured shapes on a plain or two-tone background. Everything is
drawn from a ``random.Random`` seeded by the caller, so a seed always gives the same scenes,
captions and pixels. The vocabulary is small on purpose: the demo model must learn it in
minutes on a CPU, and :mod:`modules.demo.scorer` must read every attribute back without ML.

Hold-out: :func:`is_held_out` marks about 1 in 16 single-object attribute combinations
(colour, shape, size, position, background) that :func:`sample_scene` never produces, so the
evaluation prompts are captions the model has not seen.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUND_SPLITS",
    "COLOURS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "caption",
    "draw_shape",
    "evaluation_scenes",
    "is_held_out",
    "position_centre",
    "render",
    "sample_scene",
]

# Saturated, well separated RGB values so colour names are unambiguous to the scorer.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
SIZES = ("small", "large")
# Position name -> caption phrase.
POSITIONS: dict[str, str] = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "top left": "at the top left",
    "top right": "at the top right",
    "bottom left": "at the bottom left",
    "bottom right": "at the bottom right",
}
BACKGROUND_SPLITS = ("vertical", "horizontal")
# Object diameter as a fraction of the image side.
_SIZE_FRACTION = {"small": 0.25, "large": 0.5}
_HOLD_OUT_ONE_IN = 16


@dataclass(frozen=True)
class SceneObject:
    """One shape: ``colour`` in :data:`COLOURS`, ``shape`` in :data:`SHAPES`, etc."""

    colour: str
    shape: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """What to draw. ``background2`` is set for two-tone backgrounds (split in ``split``).

    ``mention_size``/``mention_position``/``mention_background`` say whether the caption names
    that attribute; unnamed attributes are still drawn, so the model learns to fill them in.
    """

    objects: tuple[SceneObject, ...]
    background: str
    background2: str | None = None
    split: str = "vertical"
    mention_size: bool = True
    mention_position: bool = True
    mention_background: bool = True


def position_centre(position: str, size: str, side: int) -> tuple[float, float]:
    """Centre ``(x, y)`` in pixels of an object of ``size`` at ``position`` in a ``side`` image.

    Large objects sit nearer the middle so they stay inside the frame; both sizes stay in
    the third of the image their position names, which is what the scorer checks.
    """
    offset = 0.25 if size == "large" else 0.3
    x = 0.5 - offset if "left" in position else 0.5 + offset if "right" in position else 0.5
    y = 0.5 - offset if "top" in position else 0.5 + offset if "bottom" in position else 0.5
    return x * side, y * side


def _star_points(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    """Five-pointed star, point up, inner radius 0.45 of the outer."""
    import math

    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float],
               fill: tuple[int, int, int] | int, background: tuple[int, int, int] | int) -> None:
    """Draw ``shape`` filling the square ``box`` = (x0, y0, x1, y1) in pixels.

    ``background`` is needed for the ring's hole. The scorer reuses this to build templates.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle((x0 + 0.1 * w, y0 + 0.1 * h, x1 - 0.1 * w, y1 - 0.1 * h), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1 - 0.07 * h), (x0, y1 - 0.07 * h)], fill=fill)
    elif shape == "star":
        draw.polygon(_star_points(cx, cy + 0.05 * h, w / 2), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, fill=fill)
        draw.ellipse((x0 + 0.27 * w, y0 + 0.27 * h, x1 - 0.27 * w, y1 - 0.27 * h), fill=background)
    elif shape == "cross":
        arm = w / 6
        draw.rectangle((cx - arm, y0, cx + arm, y1), fill=fill)
        draw.rectangle((x0, cy - arm, x1, cy + arm), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render(scene: Scene, side: int = 128, jitter: random.Random | None = None) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``side`` x ``side`` pixels.

    ``jitter`` (optional) shifts each object by up to 1/32 of the side and scales it by
    +-10 %, so training sees variation; without it the drawing is canonical.
    """
    image = Image.new("RGB", (side, side), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    if scene.background2 is not None:
        half = (side // 2, 0, side, side) if scene.split == "vertical" else (0, side // 2, side, side)
        draw.rectangle(half, fill=COLOURS[scene.background2])
    for obj in scene.objects:
        cx, cy = position_centre(obj.position, obj.size, side)
        radius = _SIZE_FRACTION[obj.size] * side / 2
        if jitter is not None:
            cx += jitter.uniform(-1, 1) * side / 32
            cy += jitter.uniform(-1, 1) * side / 32
            radius *= jitter.uniform(0.9, 1.1)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        hole = image.getpixel((int(min(max(cx, 0), side - 1)), int(min(max(cy, 0), side - 1))))
        draw_shape(draw, obj.shape, box, COLOURS[obj.colour], hole)
    return image


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(obj: SceneObject, scene: Scene) -> str:
    words = [_article(obj.size if scene.mention_size else obj.colour)]
    if scene.mention_size:
        words.append(obj.size)
    words += [obj.colour, obj.shape]
    if scene.mention_position:
        words.append(POSITIONS[obj.position])
    return " ".join(words)


def caption(scene: Scene) -> str:
    """Plain-English caption, e.g. ``"a large red circle in the center on a blue background"``."""
    text = " and ".join(_object_phrase(obj, scene) for obj in scene.objects)
    if scene.mention_background:
        if scene.background2 is None:
            text += f" on {_article(scene.background)} {scene.background} background"
        else:
            text += f" on {_article(scene.background)} {scene.background} and {scene.background2} background"
    return text


def is_held_out(obj: SceneObject, background: str) -> bool:
    """True for the single-object combinations reserved for evaluation (about 1 in 16).

    Decided by a hash of the attributes, so it is stable across runs and Python versions.
    """
    key = f"{obj.colour}|{obj.shape}|{obj.size}|{obj.position}|{background}".encode()
    return hashlib.sha256(key).digest()[0] % _HOLD_OUT_ONE_IN == 0


def _random_object(rng: random.Random, position: str | None = None) -> SceneObject:
    return SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES),
                       position or rng.choice(list(POSITIONS)))


def _two_objects(rng: random.Random) -> tuple[SceneObject, ...]:
    """Two objects on opposite sides, different colours, so they never overlap."""
    first, second = rng.choice([("left", "right"), ("top", "bottom"), ("top left", "bottom right"),
                                ("top right", "bottom left")])
    a = _random_object(rng, first)
    b = _random_object(rng, second)
    while b.colour == a.colour:
        b = _random_object(rng, second)
    return (a, b)


def sample_scene(rng: random.Random) -> Scene:
    """Draw one training scene from ``rng``; never a held-out combination.

    About 20 % of scenes have two objects and 15 % a two-tone background; each caption
    attribute other than colour and shape is left out 10 % of the time.
    """
    while True:
        objects = _two_objects(rng) if rng.random() < 0.2 else (_random_object(rng),)
        colours = {obj.colour for obj in objects}
        background = rng.choice([c for c in COLOURS if c not in colours])
        background2 = None
        if rng.random() < 0.15:
            background2 = rng.choice([c for c in COLOURS if c not in colours and c != background])
        scene = Scene(objects, background, background2, rng.choice(BACKGROUND_SPLITS),
                      mention_size=rng.random() >= 0.1, mention_position=rng.random() >= 0.1,
                      mention_background=rng.random() >= 0.1)
        if len(objects) == 2 or background2 is not None or not is_held_out(objects[0], background):
            return scene


def evaluation_scenes() -> list[Scene]:
    """Every held-out single-object scene on a plain background, fully captioned, in a fixed order."""
    scenes = []
    for colour in COLOURS:
        for shape in SHAPES:
            for size in SIZES:
                for position in POSITIONS:
                    for background in COLOURS:
                        obj = SceneObject(colour, shape, size, position)
                        if background != colour and is_held_out(obj, background):
                            scenes.append(Scene((obj,), background))
    return scenes
