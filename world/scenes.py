"""The scenes: one shape of one colour at one position, or one everyday sound's emoji, drawn with Pillow, and the
caption that says so.

Everything about the world's vocabulary lives here, so the builder, the checker and the evaluation agree.
Every render jitters size, place, brightness and background (and a shape's hue and saturation), so a model must
learn what a caption says, not memorise pictures. The recordings behind the sound classes are world.sounds' job.
"""

from __future__ import annotations

import colorsys
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

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


@dataclass(frozen=True)
class SoundClass:
    name: str  # the class in candidates.tsv
    caption: str  # what the world's text tower reads, and what the picture shows
    emoji: str


# The classes the world hears: each has recordings from at least two source packages (one held out) and an emoji
# that stays recognisable at 32 px. Rooster and crow are left out (their emoji read as the hen and the bird at 32 px).
SOUND_CLASSES = (
    SoundClass("dog", "a dog barking", "\U0001F415"),
    SoundClass("cat", "a cat meowing", "\U0001F408"),
    SoundClass("cow", "a cow mooing", "\U0001F404"),
    SoundClass("pig", "a pig oinking", "\U0001F416"),
    SoundClass("sheep", "a sheep bleating", "\U0001F411"),
    SoundClass("hen", "a hen clucking", "\U0001F414"),
    SoundClass("frog", "a frog croaking", "\U0001F438"),
    SoundClass("insects", "insects buzzing", "\U0001F41D"),
    SoundClass("chirping_birds", "birds chirping", "\U0001F426"),
    SoundClass("crackling_fire", "a fire crackling", "\U0001F525"),
    SoundClass("thunderstorm", "thunder", "\u26A1"),
    SoundClass("rain", "rain falling", "\u2614"),
    SoundClass("wind", "wind blowing", "\U0001F32C"),
    SoundClass("water_drops", "water dripping", "\U0001F4A7"),
    SoundClass("footsteps", "footsteps", "\U0001F463"),
    SoundClass("laughing", "people laughing", "\U0001F602"),
    SoundClass("clapping", "hands clapping", "\U0001F44F"),
    SoundClass("airplane", "an airplane", "\u2708"),
    SoundClass("helicopter", "a helicopter", "\U0001F681"),
    SoundClass("engine", "a car engine", "\U0001F697"),
    SoundClass("train", "a train", "\U0001F682"),
    SoundClass("car_horn", "a car horn", "\U0001F4EF"),
    SoundClass("siren", "a siren", "\U0001F6A8"),
    SoundClass("clock_tick", "a clock ticking", "\u23F0"),
)
BY_NAME = {c.name: c for c in SOUND_CLASSES}
BY_CAPTION = {c.caption: c for c in SOUND_CLASSES}


EMOJI_DIR = Path(__file__).parent / "sound_sources" / "emoji"
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # Debian's fonts-noto-color-emoji


# --- everyday sounds: each class drawn as its emoji ----------------------------------------------------------------------------------------------------------

SPRITE_SIZE = 64
SOUND_SIZE_RANGE = (0.62, 0.80)  # the emoji's side, as a fraction of the image
SOUND_CENTRE_JITTER = 0.08


def draw_emoji_sprites(font_path: Path = EMOJI_FONT, out: Path = EMOJI_DIR) -> None:
    """Redraw the committed sprites from Noto Color Emoji (its bitmaps are 136 px: drawn at 109 pt, cropped, shrunk)."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), 109)
    out.mkdir(parents=True, exist_ok=True)
    for c in SOUND_CLASSES:
        canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((0, 0), c.emoji, font=font, embedded_color=True)
        sprite = canvas.crop(canvas.getbbox())
        side = max(sprite.size)
        square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        square.paste(sprite, ((side - sprite.width) // 2, (side - sprite.height) // 2))
        square.resize((SPRITE_SIZE, SPRITE_SIZE), Image.Resampling.LANCZOS).save(out / f"{c.name}.png")


_SPRITES: dict[str, Image.Image] = {}


def sprite(name: str) -> Image.Image:
    if name not in _SPRITES:
        _SPRITES[name] = Image.open(EMOJI_DIR / f"{name}.png").convert("RGBA")
    return _SPRITES[name]


def render_sound(name: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """One jittered picture of a sound class: its emoji on a pale background, as the shapes are drawn."""
    big = size * SUPERSAMPLE
    grey = int(rng.integers(215, 250))
    tint = rng.integers(-6, 7, size=3)
    background = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
    side = int(rng.uniform(*SOUND_SIZE_RANGE) * big)
    cx = (0.5 + rng.uniform(-SOUND_CENTRE_JITTER, SOUND_CENTRE_JITTER)) * big
    cy = (0.5 + rng.uniform(-SOUND_CENTRE_JITTER, SOUND_CENTRE_JITTER)) * big
    art = sprite(name).resize((side, side), Image.Resampling.LANCZOS)
    rgb = ImageEnhance.Brightness(art.convert("RGB")).enhance(float(rng.uniform(0.85, 1.1)))
    image = Image.new("RGB", (big, big), background)
    image.paste(rgb, (int(cx - side / 2), int(cy - side / 2)), art.getchannel("A"))
    return image.resize((size, size), Image.Resampling.BOX)


def sound_scenes() -> list[dict]:
    """Every sound class as a scene: its name and caption, in a fixed order."""
    return [{"sound": c.name, "caption": c.caption} for c in SOUND_CLASSES]


def world_scenes() -> list[dict]:
    """Everything the world draws: the 72 shape scenes, then the sound classes."""
    return all_scenes() + sound_scenes()


def render_scene(scene: dict, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """One jittered picture of any scene of the world (a shape or a sound)."""
    if "sound" in scene:
        return render_sound(scene["sound"], rng, size)
    return render(scene["shape"], scene["colour"], scene["position"], rng, size)
