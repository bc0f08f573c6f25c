"""Storyboard videos: one image per window, on screen while its stretch of the sound plays, the sound as audio."""

from __future__ import annotations

import json
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import generate.__main__ as cli
from generate.storyboard import frame_owners, write_storyboard
from tests.conftest import TINY, tone

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def streams(path) -> str:
    run = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return run.stderr


def test_each_frame_shows_the_newest_window_begun():
    windows = [{"window": 0, "start_s": 0.0}, {"window": 1, "start_s": 1.0}, {"window": 2, "start_s": 1.5}]
    assert frame_owners(windows, 2.0, fps=4) == [0, 0, 0, 0, 1, 1, 2, 2]


def test_video_lasts_as_long_as_the_sound_with_one_image_per_window_and_the_sound_as_audio(tmp_path):
    images = [Image.new("RGB", (32, 32), c) for c in COLOURS]
    windows = [{"window": 0, "start_s": 0.0}, {"window": 1, "start_s": 2.0}, {"window": 2, "start_s": 4.5}]
    path = write_storyboard(tmp_path / "story.mp4", images, windows, tone(7.0))
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert seconds == pytest.approx(7.0, abs=0.1) and frames == 70
    info = streams(path)
    assert "Video: h264" in info and "Audio: aac" in info
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    shown = [np.frombuffer(frame, np.uint8).reshape(meta["size"][1], meta["size"][0], 3)[128, 128] for frame in reader]
    nearest = [int(np.argmin([np.abs(pixel.astype(int) - c).sum() for c in COLOURS])) for pixel in shown]
    assert nearest[:20] == [0] * 20 and nearest[20:45] == [1] * 25 and nearest[45:] == [2] * 25  # window k while its sound plays
    assert meta["size"] == (256, 256)  # 32 px enlarged 8× pixel for pixel


def test_cli_writes_a_storyboard_for_every_window(saved_pipeline, tmp_path):
    clip = tmp_path / "walk.wav"
    import soundfile as sf

    window = 96_400 / 16_000
    sf.write(clip, tone(2.5 * window), 16_000)
    out = tmp_path / "out"
    assert cli.main(["--audio", str(clip), "--out", str(out), "--pipeline", str(saved_pipeline), "--window-policy", "all", *TINY]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["videos"] == ["walk.mp4"] and len(settings["images"]) == 3
    assert imageio_ffmpeg.count_frames_and_secs(str(out / "walk.mp4"))[1] == pytest.approx(2.5 * window, abs=0.15)
    assert cli.main(["--audio", str(clip), "--out", str(tmp_path / "quiet"), "--pipeline", str(saved_pipeline), "--window-policy", "all",
                     "--no-video", *TINY]) == 0
    assert not list((tmp_path / "quiet").glob("*.mp4"))
