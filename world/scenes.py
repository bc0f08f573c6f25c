"""The scenes: one shape of one colour at one position, drawn with Pillow, and the caption that says so.

Everything about the world's vocabulary lives here, so the builder, the checker and the evaluation agree.
Every render jitters size, place, hue, saturation, brightness and background, so a model must learn the
attributes, not memorise pictures.
"""

from __future__ import annotations

import colorsys
import itertools

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32
SUPERSAMPLE = 4  # draw at 4x and downsample: smooth edges, as a camera would give
SHAPES = ("circle", "square", "triangle", "cross")
# Reference hues in degrees; the checker names a colour by the nearest of these.
COLOURS = {"red": 0.0, "orange": 30.0, "yellow": 56.0, "green": 125.0, "blue": 225.0, "purple": 285.0}
POSITIONS = {"left": 0.24, "middle": 0.5, "right": 0.76}  # the object's centre, as a fraction of the width
HUE_JITTER = 6.0
CENTRE_JITTER = 0.04
SIZE_RANGE = (0.34, 0.44)  # the object's bounding box side, as a fraction of the image: big enough that an 8x8 latent keeps the shape


def article(word: str) -> str:
    """"an" before a vowel sound, "a" otherwise, as people say it ("an orange circle", "a red square")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def caption(shape: str, colour: str, position: str) -> str:
    where = "in the middle" if position == "middle" else f"on the {position}"
    return f"{article(colour)} {colour} {shape} {where}"


def legacy_caption(text: str) -> str:
    """The spelling the world used before issue 9 ("a orange circle ..."): the text encoder shipped until the next
    rebuild was trained on it, so experiments that take targets from that encoder use this spelling."""
    return "a " + text[3:] if text.startswith("an ") else text


def all_scenes() -> list[dict]:
    """Every (shape, colour, position) with its caption, in a fixed order."""
    return [
        {"shape": s, "colour": c, "position": p, "caption": caption(s, c, p)}
        for s, c, p in itertools.product(SHAPES, COLOURS, POSITIONS)
    ]


def shape_polygon(shape: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]] | None:
    """The outline of `shape` filling `box` (x0, y0, x1, y1); None for the circle (an ellipse)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if shape == "circle":
        return None
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "triangle":  # pointing up
        return [(x0 + w / 2, y0), (x1, y1), (x0, y1)]
    if shape == "cross":  # a plus sign, arms a third of the box wide
        a, b, c, d = x0 + w / 3, x0 + 2 * w / 3, y0 + h / 3, y0 + 2 * h / 3
        return [(a, y0), (b, y0), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (x0, d), (x0, c), (a, c)]
    raise ValueError(f"unknown shape {shape!r}; the world has {SHAPES}")


def shape_mask(shape: str, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """A boolean mask of `shape` filling `box` on a canvas of `size` (width, height)."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    polygon = shape_polygon(shape, box)
    if polygon is None:
        draw.ellipse(box, fill=255)
    else:
        draw.polygon(polygon, fill=255)
    return np.asarray(canvas) > 127


def colour_rgb(colour: str, rng: np.random.Generator | None = None) -> tuple[int, int, int]:
    """The colour's RGB, with hue, saturation and brightness jittered when `rng` is given."""
    hue = COLOURS[colour]
    sat, val = 0.9, 0.9
    if rng is not None:
        hue += rng.uniform(-HUE_JITTER, HUE_JITTER)
        sat, val = rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0)
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360, sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def render(shape: str, colour: str, position: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """One jittered picture of the scene: a pale background, the shape on it."""
    big = size * SUPERSAMPLE
    grey = int(rng.integers(215, 250))
    tint = rng.integers(-6, 7, size=3)
    background = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
    side = rng.uniform(*SIZE_RANGE) * big
    cx = (POSITIONS[position] + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER)) * big
    cy = (0.5 + rng.uniform(-0.15, 0.15)) * big
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    fill = colour_rgb(colour, rng)
    polygon = shape_polygon(shape, box)
    if polygon is None:
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon(polygon, fill=fill)
    return image.resize((size, size), Image.Resampling.BOX)
