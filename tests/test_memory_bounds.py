"""A small file that decodes huge (a FLAC of 100 s × 192 kHz × 8 channels: 11 MB on disk, 614 MB as float32) costs
the CLI, the app and training memory in proportion to what the model hears, not to what the file holds.

Each entry point runs in a fresh process twice, on a one-second clip and on the huge one; the peak resident memory
(`resource.getrusage`) of the two runs may differ by at most MEMORY_BOUND_MB. Decoding the file whole would cost
at least 614 MB more; block-wise decoding costs the 16 kHz mono result (100 s: 6.4 MB) and one block (4 MB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_cli import saved_pipeline  # noqa: F401  (fixture: a saved tiny pipeline)

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BOUND_MB = 150
RATE, CHANNELS, SECONDS = 192_000, 8, 100


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sounds")
    block = np.zeros((RATE, CHANNELS), np.float32)
    block[:, 0] = 0.2 * np.sin(2 * np.pi * 441 * np.arange(RATE) / RATE)  # audible, and compresses to almost nothing
    with sf.SoundFile(folder / "huge.flac", "w", RATE, CHANNELS, format="FLAC", subtype="PCM_16") as f:
        for _ in range(SECONDS):
            f.write(block)
    sf.write(folder / "small.flac", block, RATE)
    assert (folder / "huge.flac").stat().st_size < 20 * 2**20  # small on disk: the point of the test
    return {"small": folder / "small.flac", "huge": folder / "huge.flac"}


def peak_mb(script: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running `script`."""
    code = textwrap.dedent(script) + "\nimport resource\nprint('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return int(run.stdout.split("PEAK")[-1]) / 1024


def growth(script: str, sounds: dict[str, Path]) -> float:
    small, huge = (peak_mb(script.format(audio=str(sounds[k]))) for k in ("small", "huge"))
    print(f"peak RSS: one-second clip {small:.0f} MB, huge FLAC {huge:.0f} MB")
    return huge - small


def test_cli_memory_follows_the_sound_not_the_file(sounds, saved_pipeline, tmp_path):  # noqa: F811
    script = f"""
        import sys, shutil
        from generate.__main__ import main
        shutil.rmtree({str(tmp_path / 'out')!r}, ignore_errors=True)
        assert main(["--audio", "{{audio}}", "--out", {str(tmp_path / 'out')!r}, "--pipeline", {str(saved_pipeline)!r},
                     "--steps", "1", "--height", "32", "--width", "32", "--quiet"]) == 0
    """
    assert growth(script, sounds) < MEMORY_BOUND_MB


def test_app_memory_follows_the_sound_not_the_file(sounds):
    script = """
        import app
        from tests.test_app import _pipeline
        handler = app.make_handler(_pipeline(), None, app.Settings(max_images=1, default_steps=1, max_audio_seconds=300.0))
        gallery = handler("{audio}", "", 1, 1, 3.0, 0, "first")[0]
        assert len(gallery) == 1
    """
    assert growth(script, sounds) < MEMORY_BOUND_MB


def test_training_memory_follows_the_sound_not_the_file(sounds):
    script = """
        from align.data import AudioCaptionDataset, AudioCaptionPairs
        pairs = AudioCaptionPairs(["{audio}"] * 3, ["a tone"] * 3)
        dataset = AudioCaptionDataset(pairs, {{"a tone": 0}}, window_samples=96_400)
        assert all(dataset[i] is not None for i in range(3))  # every item read: each read must stay bounded
    """
    assert growth(script, sounds) < MEMORY_BOUND_MB
