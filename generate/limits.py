"""The range of every generation setting, in one place for the command line (generate/__main__.py) and the app (app.py).

Each value a user can set (steps, images, size, guidance, seed, how long a sound, how large an upload or a picture) has
a range that the models and a machine can serve. The checks here run before any model loads and raise `LimitError`:
one line that names the setting, the value it got and what it accepts. Torch-free, so a refusal comes at once.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
from numbers import Real
from pathlib import Path

from hearing.audio import DEFAULT_MAX_SECONDS

MAX_STEPS = 100  # denoising steps; DPM-Solver++ needs 20-25
MAX_IMAGES = 8  # images of one sound window in one run (the app's --max-images may lower it, not raise it)
MAX_BEST_OF = 8  # candidates generated per kept image
MAX_BATCH_SIZE = 64  # images denoised at once
MAX_WINDOWS = 100  # windows of one sound under --window-policy all (10 min of sound at ~6 s a window)
SIDE_MULTIPLE = 8  # height and width: the VAE halves a picture up to three times
MAX_SIDE = 1024  # pixels, height or width
MAX_SIDE_FACTOR = 2  # and at most this many times the model's own size (the world draws 32 px, SD 2.1 768 px)
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0  # 1 or less turns guidance off
MIN_TEXT_WEIGHT, MAX_TEXT_WEIGHT = 0.0, 5.0
MAX_SEED = 2**32 - 1
RANDOM_SEED = -1  # the app's "draw one for me"
MAX_AUDIO_TOKENS = 76  # a plain encoder's window: with the BOS state, the 77 positions of SD's text encoder
MAX_PROMPT_CHARS = 1000  # CLIP reads 77 tokens; the rest is cut off anyway
MAX_AUDIO_SECONDS = DEFAULT_MAX_SECONDS  # the longest sound anything here decodes (--max-audio-seconds may lower it)
APP_AUDIO_SECONDS = 120.0  # the app's default: two minutes, more than the 16 windows one request may hear
# An upload may be as large as the longest allowed sound stored as 16-bit stereo 48 kHz WAV (192,000 bytes a second,
# the largest common recording format), plus room for headers, tags and cover art.
UPLOAD_BYTES_PER_SECOND = 48_000 * 2 * 2
UPLOAD_SLACK_BYTES = 2**20
# A picture to edit, by the pixel count its header states (read before any pixel is decoded): 4096 × 4096.
MAX_PICTURE_PIXELS = 4096 * 4096


class LimitError(ValueError):
    """A setting outside its range: the message names it, the value it got and the range it accepts."""


def _shown(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_number(value):
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _finite(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def whole(value, name: str, low: int, high: int) -> int:
    """`value` as an int in [low, high]; a float must be whole (3.0 is 3; 2.5, NaN and infinities are refused)."""
    number_ = _as_number(value)
    if _finite(number_) and number_ == int(number_) and low <= number_ <= high:
        return int(number_)
    raise LimitError(f"{name} {_shown(value)}: must be a whole number from {low} to {high}.")


def number(value, name: str, low: float, high: float) -> float:
    """`value` as a finite float in [low, high] (NaN and infinities are refused)."""
    number_ = _as_number(value)
    if _finite(number_) and low <= number_ <= high:
        return float(number_)
    raise LimitError(f"{name} {_shown(value)}: must be a number from {low:g} to {high:g}.")


def side(value, name: str) -> int:
    """An image height or width: a positive multiple of SIDE_MULTIPLE up to MAX_SIDE (0, -8 and 7 are refused)."""
    try:
        pixels = whole(value, name, SIDE_MULTIPLE, MAX_SIDE)
    except LimitError:
        pixels = None
    if pixels is None or pixels % SIDE_MULTIPLE:
        raise LimitError(f"{name} {_shown(value)}: must be a multiple of {SIDE_MULTIPLE} from {SIDE_MULTIPLE} to {MAX_SIDE} (pixels).")
    return pixels


def side_for_model(pixels: int, name: str, native: int) -> int:
    """A side the model in use can draw: at most MAX_SIDE_FACTOR times its own size `native` (and MAX_SIDE)."""
    high = min(MAX_SIDE, MAX_SIDE_FACTOR * native)
    if pixels > high:
        raise LimitError(f"{name} {pixels}: this model draws {native} px pictures and serves at most {high} px "
                         f"({MAX_SIDE_FACTOR}× its own size). Ask for {high} px or less.")
    return pixels


def seed(value, name: str, random_allowed: bool = False) -> int | None:
    """A seed from 0 to MAX_SEED; with `random_allowed`, None or RANDOM_SEED (-1) give None: draw one."""
    if random_allowed and value is None:
        return None
    try:
        chosen = whole(value, name, RANDOM_SEED if random_allowed else 0, MAX_SEED)
    except LimitError:
        also = f", or {RANDOM_SEED} for a random one" if random_allowed else ""
        raise LimitError(f"{name} {_shown(value)}: must be a whole number from 0 to {MAX_SEED}{also}.") from None
    return None if chosen == RANDOM_SEED else chosen


def prompt(value, name: str) -> str | None:
    """Words to mix with the sound, stripped; None when empty; at most MAX_PROMPT_CHARS characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise LimitError(f"{name}: must be text, got {type(value).__name__}.")
    if len(value) > MAX_PROMPT_CHARS:
        raise LimitError(f"{name}: {len(value):,} characters, over the limit of {MAX_PROMPT_CHARS} (CLIP reads its first 77 tokens only).")
    return value.strip() or None


def audio_seconds(value, name: str) -> float:
    """The longest sound to accept: above 0, at most MAX_AUDIO_SECONDS."""
    seconds = number(value, name, 0.0, MAX_AUDIO_SECONDS)
    if seconds <= 0:
        raise LimitError(f"{name} {_shown(value)}: must be a number above 0 and at most {MAX_AUDIO_SECONDS:g}.")
    return seconds


def max_upload_bytes(max_audio_seconds: float) -> int:
    """The largest upload that can hold a sound of `max_audio_seconds` (see UPLOAD_BYTES_PER_SECOND)."""
    return int(max_audio_seconds * UPLOAD_BYTES_PER_SECOND) + UPLOAD_SLACK_BYTES


def picture_size(path: str | Path, name: str, max_pixels: int = MAX_PICTURE_PIXELS) -> tuple[int, int]:
    """(width, height) of a picture file as its header states them, no pixel decoded; a LimitError over `max_pixels`,
    FileNotFoundError for a missing file and ValueError for a file that is not a readable picture."""
    from PIL import Image, UnidentifiedImageError

    shown = Path(path).name
    try:
        with warnings.catch_warnings():  # PIL's warning above its own limit: the check below says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as picture:  # reads the header only
                width, height = picture.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} {path}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise ValueError(f"{name} {path}: a folder, not a picture. Give a PNG or JPEG.") from None
    except Image.DecompressionBombError as error:  # PIL's own ceiling (Image.MAX_IMAGE_PIXELS), also met in the header
        stated = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(stated.group(1)):,} pixels" if stated else "too many pixels"
        raise LimitError(f"{name} {shown}: {count}, over the limit of {max_pixels:,}. Scale the picture down first.") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{name} {shown}: not a picture this can read ({error}). Give a PNG or JPEG.") from None
    if width * height > max_pixels:
        side_ = math.isqrt(max_pixels)
        raise LimitError(f"{name} {shown}: {width}×{height} is {width * height:,} pixels, over the limit of {max_pixels:,} "
                         f"({side_}×{side_}). Scale the picture down first.")
    return width, height


def open_picture(path: str | Path, name: str, mode: str = "RGB", max_pixels: int = MAX_PICTURE_PIXELS):
    """A picture file in `mode`, decoded only after `picture_size` has found it within `max_pixels` (same errors)."""
    from PIL import Image

    picture_size(path, name, max_pixels)
    try:
        with Image.open(path) as picture:
            return picture.convert(mode)
    except (OSError, ValueError) as error:  # a truncated or corrupt body behind a valid header
        raise ValueError(f"{name} {Path(path).name}: the picture cannot be decoded ({error}). Save it again as PNG or JPEG.") from None


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a refusal (an unknown flag, a value of the wrong type, a missing flag) in one line, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default when there is one to show: not on required flags, on-off switches or a default of None
    (one the models decide), and not twice."""

    def _get_help_string(self, action):
        if action.required or action.default is None or isinstance(action.default, bool) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
