"""A model-free judge of a picture: which colour, shape and position it shows, from pixels and geometry alone.

No trained model is involved, so its verdicts can grade trained models. The object is the largest blob of
pixels that differ from the background (the median of the border); its colour is the nearest reference hue
of its core pixels; its position is the nearest reference centre to its centroid; its shape is the template
(each shape drawn into the blob's bounding box) that overlaps the blob best. Fill ratio alone would confuse
the triangle and the cross, which cover about the same area of their box; overlap does not.

A sound's picture is judged by template matching: every class's emoji sprite, at three sizes of the range the
renders use and at every shift of their jitter, is laid on the picture's background, and the class whose best
placement leaves the smallest squared difference is what the picture shows.
"""

from __future__ import annotations

import colorsys
from collections import deque

import numpy as np
from PIL import Image

from world.scenes import COLOURS, IMAGE_SIZE, POSITIONS, SHAPES, SOUND_CENTRE_JITTER, SOUND_CLASSES, SOUND_SIZE_RANGE, SUPERSAMPLE, shape_mask, sprite

ATTRIBUTES = ("colour", "shape", "position")  # what a picture is judged on, in this order
MIN_CONTRAST = 0.15  # an object must differ from the background by this much (0..1) somewhere
MIN_PIXELS = 4


def _to_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    return array / 255.0 if array.max() > 1.0 else array


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (small images: a plain flood fill is enough)."""
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    height, width = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        blob, queue = [], deque([(y, x)])
        seen[y, x] = True
        while queue:
            cy, cx = queue.popleft()
            blob.append((cy, cx))
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(blob) > len(best):
            best = blob
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def _hue_name(rgb: np.ndarray) -> str:
    hue = colorsys.rgb_to_hsv(*np.clip(rgb, 0, 1))[0] * 360
    return min(COLOURS, key=lambda name: min(abs(hue - COLOURS[name]), 360 - abs(hue - COLOURS[name])))


def _shape_name(occupancy: np.ndarray, blob: np.ndarray) -> str:
    """The shape whose template, drawn into the blob's bounding box, best overlaps the soft occupancy."""
    ys, xs = np.nonzero(blob)
    height, width = blob.shape
    box = (xs.min() * SUPERSAMPLE, ys.min() * SUPERSAMPLE, (xs.max() + 1) * SUPERSAMPLE - 1, (ys.max() + 1) * SUPERSAMPLE - 1)
    scores = {}
    for shape in SHAPES:
        fine = shape_mask(shape, box, (width * SUPERSAMPLE, height * SUPERSAMPLE)).astype(np.float32)
        template = fine.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))
        scores[shape] = np.minimum(occupancy, template).sum() / max(np.maximum(occupancy, template).sum(), 1e-6)
    return max(scores, key=scores.get)


def check_image(image) -> dict[str, str | None]:
    """{"colour", "shape", "position"} the picture shows; each None when no object stands out."""
    rgb = _to_array(image)
    height, width, _ = rgb.shape
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    contrast = np.abs(rgb - background).max(axis=-1)
    peak = float(np.percentile(contrast, 99))
    if peak < MIN_CONTRAST:
        return {"colour": None, "shape": None, "position": None}
    blob = _largest_blob(contrast > peak / 2)
    if blob.sum() < MIN_PIXELS:
        return {"colour": None, "shape": None, "position": None}
    core = blob & (contrast > 0.75 * peak)
    colour = _hue_name(rgb[core if core.any() else blob].mean(axis=0))
    occupancy = np.clip(contrast / peak, 0, 1) * _grow(blob)
    ys, xs = np.nonzero(blob)
    weights = occupancy[ys, xs]
    centre = float((xs + 0.5) @ weights / weights.sum()) / width
    position = min(POSITIONS, key=lambda name: abs(POSITIONS[name] - centre))
    return {"colour": colour, "shape": _shape_name(occupancy, blob), "position": position}


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 4-neighbours: keeps the soft edge pixels of the blob, drops far-away specks."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown.astype(np.float32)


_TEMPLATES: tuple | None = None


def _sound_templates(size: int = IMAGE_SIZE) -> tuple:
    """Every class's sprite at three sizes and every shift, flattened: alpha and alpha × colour (T, H·W·3), the class of
    each template, and the products check_sound needs of them, computed once."""
    global _TEMPLATES
    if _TEMPLATES is None:
        alphas, colours, names = [], [], []
        shift = int(np.ceil(SOUND_CENTRE_JITTER * size)) + 1
        for c in SOUND_CLASSES:
            art = sprite(c.name)
            for fraction in np.linspace(*SOUND_SIZE_RANGE, 3):
                side = int(round(fraction * size))
                small = np.asarray(art.resize((side, side), Image.Resampling.BOX), dtype=np.float32) / 255.0
                for dy in range(-shift, shift + 1):
                    for dx in range(-shift, shift + 1):
                        canvas = np.zeros((size, size, 4), np.float32)
                        y0, x0 = (size - side) // 2 + dy, (size - side) // 2 + dx
                        ys, xs = slice(max(y0, 0), min(y0 + side, size)), slice(max(x0, 0), min(x0 + side, size))
                        canvas[ys, xs] = small[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
                        alphas.append(canvas[..., 3])
                        colours.append(canvas[..., :3] * canvas[..., 3:])
                        names.append(c.name)
        alphas = np.repeat(np.stack(alphas)[..., None], 3, axis=-1).reshape(len(names), -1)  # per colour channel
        colours = np.stack(colours).reshape(len(names), -1)
        _TEMPLATES = (alphas, colours, names, (colours**2).sum(1), colours * alphas, alphas**2)
    return _TEMPLATES


def check_sound(image) -> str:
    """The sound class whose emoji, laid on the picture's background at its best size and place, fits it best.

    With I the picture, b its background (the median of its border), A_t and C_t template t's alpha and alpha × colour,
    the error |C_t + (1 - A_t) b - I|² = |C_t - A_t b|² - 2 (C_t - A_t b)·D + |D|² with D = I - b, so every template is
    scored with a few matrix-vector products (|D|² is the same for all and is left out)."""
    rgb = _to_array(image).astype(np.float32)
    alphas, colours, names, colour_energy, colour_alpha, alpha_energy = _sound_templates(rgb.shape[0])
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    b = np.broadcast_to(np.median(border, axis=0), rgb.shape).reshape(-1)
    d = rgb.reshape(-1) - b
    own = colour_energy - 2 * colour_alpha @ b + alpha_energy @ (b * b)
    cross = colours @ d - alphas @ (b * d)
    return names[int(np.argmin(own - 2 * cross))]


def scene_hits(seen: dict, scene: dict) -> dict[str, bool]:
    """What `seen` (a picture's verdict, or the scene a clip was heard as) gets right of `scene`: a shape scene's colour,
    shape, position and all three; a sound scene's class (as "sound" and "all"). A scene of the other kind gets nothing."""
    if "sound" in scene:
        right = seen.get("sound") == scene["sound"]
        return {"sound": right, "all": right}
    ok = {key: seen.get(key) == scene[key] for key in ATTRIBUTES}
    return ok | {"all": all(ok.values())}


def judge_scene(image, scene: dict) -> dict[str, bool]:
    """What the picture gets right of the scene (scene_hits of the checker's verdict)."""
    return scene_hits({"sound": check_sound(image)} if "sound" in scene else check_image(image), scene)


def accuracy(images, scenes: list[dict]) -> dict[str, float]:
    """Fraction of `images` that match their `scenes`: per attribute of the shape scenes (colour, shape, position),
    "sound" for the sound scenes, and "all" over every image. Keys of a kind absent from `scenes` are left out."""
    hits, counts = {}, {}
    for image, scene in zip(images, scenes, strict=True):
        for key, good in judge_scene(image, scene).items():
            hits[key] = hits.get(key, 0) + good
            counts[key] = counts.get(key, 0) + 1
    if not scenes:
        return {key: 0.0 for key in (*ATTRIBUTES, "all")}
    return {key: hits[key] / counts[key] for key in (*ATTRIBUTES, "sound", "all") if key in counts}
