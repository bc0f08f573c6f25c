"""A model-free judge of a picture: which colour, shape and position it shows, from pixels and geometry alone.

No trained model is involved, so its verdicts can grade trained models. The object is the largest blob of
pixels that differ from the background (the median of the border); its colour is the nearest reference hue
of its core pixels; its position is the nearest reference centre to its centroid; its shape is the template
(each shape drawn into the blob's bounding box) that overlaps the blob best. Fill ratio alone would confuse
the triangle and the cross, which cover about the same area of their box; overlap does not.
"""

from __future__ import annotations

import colorsys
from collections import deque

import numpy as np
from PIL import Image

from world.scenes import COLOURS, POSITIONS, SHAPES, SUPERSAMPLE, shape_mask

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


def accuracy(images, scenes: list[dict]) -> dict[str, float]:
    """Fraction of `images` whose colour, shape and position (and all three) match their `scenes`."""
    hits = dict.fromkeys((*ATTRIBUTES, "all"), 0)
    for image, scene in zip(images, scenes, strict=True):
        verdict = check_image(image)
        ok = [verdict[key] == scene[key] for key in ATTRIBUTES]
        for key, good in zip(ATTRIBUTES, ok):
            hits[key] += good
        hits["all"] += all(ok)
    return {key: count / max(len(scenes), 1) for key, count in hits.items()}
