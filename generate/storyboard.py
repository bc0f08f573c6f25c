"""A long sound as a storyboard video: each window's image on screen while that stretch of the sound plays,
with the sound itself as the audio track (an MP4: H.264 video, AAC audio).

    write_storyboard("story.mp4", images, windows, wave_16k)     # images and windows as the pipeline returns them

FFmpeg comes from the `imageio-ffmpeg` wheel, which bundles its own binary, so no system FFmpeg is needed.
Windows of `window_policy="all"` follow each other; the last may overlap its neighbour (it ends at the sound's
end), so at any moment the newest window that has begun is shown. Images smaller than `size` are enlarged pixel
for pixel (the world draws 32×32); sides are rounded to even numbers, as H.264 needs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from hearing.audio import SAMPLE_RATE

DEFAULT_FPS = 10
MIN_SIZE = 256


def frame_owners(windows: list[dict], duration_s: float, fps: int) -> list[int]:
    """For every frame of a `duration_s` video, the index of the window shown: the last one begun by then."""
    starts = [w["start_s"] for w in windows]
    frames = max(1, int(round(duration_s * fps)))
    return [max((i for i, start in enumerate(starts) if start <= f / fps + 1e-9), default=0) for f in range(frames)]


def _frame(image: Image.Image, size: int) -> np.ndarray:
    factor = max(1, size // max(image.size))
    width, height = image.width * factor, image.height * factor
    resized = image.convert("RGB").resize((width + width % 2, height + height % 2), Image.NEAREST)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


def write_storyboard(path: str | Path, images: list[Image.Image], windows: list[dict], sound: np.ndarray | str | Path,
                     duration_s: float | None = None, fps: int = DEFAULT_FPS, size: int = MIN_SIZE) -> Path:
    """Write the MP4 at `path`: one image per window (the first image of each window if there are several),
    as long as the sound, which is its audio track. `sound` is the decoded wave (mono, 16 kHz), or the sound
    file itself with its `duration_s` (FFmpeg reads it: no second decode in Python)."""
    import imageio_ffmpeg

    if len(images) != len(windows) or not images:
        raise ValueError(f"{len(images)} images for {len(windows)} windows: pass the pipeline's images and windows together")
    first = {}
    for image, window in zip(images, windows):
        first.setdefault(window["window"], (window, image))
    ordered = [first[k] for k in sorted(first)]
    frames = [_frame(image, size) for _, image in ordered]
    if isinstance(sound, np.ndarray):
        duration_s = len(sound) / SAMPLE_RATE
    elif duration_s is None:
        raise ValueError("a sound file needs its duration_s (the pipeline's windows end at it)")
    owners = frame_owners([w for w, _ in ordered], duration_s, fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        track = Path(tmp) / "sound.wav"
        if isinstance(sound, np.ndarray):
            sf.write(track, np.asarray(sound, dtype=np.float32), SAMPLE_RATE)
        else:
            track = Path(sound)
        height, width = frames[0].shape[:2]
        # -shortest: the video ends with the sound, not at the next whole frame
        writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264", macro_block_size=2,
                                             audio_path=str(track), audio_codec="aac", output_params=["-shortest"],
                                             ffmpeg_log_level="error")
        writer.send(None)  # start ffmpeg
        for owner in owners:
            writer.send(frames[owner])
        writer.close()
    return path
