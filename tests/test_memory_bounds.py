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
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


def test_cli_memory_follows_the_sound_not_the_file(sounds, saved_pipeline, tmp_path):
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
        from tests.conftest import build_pipeline
        handler = app.make_handler(build_pipeline(text_mixing=True), None, app.Settings(max_images=1, default_steps=1, max_audio_seconds=300.0))
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


# --- settings out of range: refused at once, in little memory -----------------------------------------------------

REFUSAL_MB = 1500
WORLD = (ROOT / "models" / "world" / "pipeline" / "model_index.json").is_file()


# Runs `-m MODULE ARGS` or `-c SCRIPT` and, at exit, writes the process's own peak resident memory (VmHWM, which
# starts afresh at exec; getrusage's ru_maxrss would count the forked copy of this test process) to PEAK_FILE.
PEAK_WRAPPER = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as status, open(os.environ["PEAK_FILE"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(peak)
mode, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<script>", "exec"), {"__name__": "__main__"})
"""


def refusal(argv: list[str], tmp_path: Path) -> tuple[int, str, float, float]:
    """(exit status, stderr, peak resident MB, seconds) of a fresh `python ARGV` (ARGV: -m MODULE ... or -c SCRIPT)."""
    peak = tmp_path / "peak"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path),
           "PEAK_FILE": str(peak)}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=120)
    return run.returncode, run.stderr, int(peak.read_text()) / 1024, time.monotonic() - started


CLI_CASES = {
    "steps 1e9": ["--steps", "1000000000"],
    "100000 images": ["--num-images", "100000"],
    "4096 px": ["--height", "4096", "--width", "4096"],
    "height -8": ["--height", "-8"],
    "height 0": ["--height", "0"],
    "height 7": ["--height", "7"],
    "256 px for the world": ["--height", "256"],
    "guidance nan": ["--guidance", "nan"],
    "seed 2**70": ["--seed", str(2**70)],
    "out under /proc": ["--out", "/proc/audio2image/out"],
}


@pytest.mark.skipif(not WORLD, reason="models/world not built")
def test_cli_refusals_answer_in_seconds_in_little_memory(tmp_path):
    """The README's command with one setting out of range: one line, exit 1, no traceback, in seconds, under 1.5 GB."""
    failures = []
    for name, extra in CLI_CASES.items():
        argv = ["-m", "generate", "--audio", "examples/world/red_circle_left.wav", "--out", str(tmp_path / "out"), *extra]
        code, err, peak, seconds = refusal(argv, tmp_path)
        print(f"{name}: exit {code}, {seconds:.1f} s, peak {peak:.0f} MB: {err.strip()[:100]}")
        lines = err.strip().splitlines()
        if not (code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and peak < REFUSAL_MB and seconds < 30):
            failures.append((name, code, round(peak), round(seconds, 1), err[-500:]))
    assert not failures, failures
    assert not (tmp_path / "out").exists()


def test_app_refusals_stay_in_little_memory(tmp_path):
    """The app's checks in a fresh process: a picture bomb (12000 × 12000 pixels in 140 KB) and NaN for every number."""
    from tests.conftest import huge_png

    bomb = huge_png(tmp_path / "bomb.png", 12_000, 12_000)
    script = f"""
        import gradio as gr, app
        from gradio.data_classes import ImageData
        try:
            app.bounded_picture(gr.Image(type="pil", label="Picture")).preprocess(ImageData(path={str(bomb)!r}, orig_name="bomb.png"))
        except gr.Error as error:
            assert "over the limit" in error.message, error.message
        else:
            raise SystemExit("the bomb was decoded")
        class NoModel:
            def __call__(self, *a, **k):
                raise SystemExit("a value out of range reached the models")
        handler = app.make_handler(NoModel(), None, app.Settings())
        for values in ((float("nan"), 2, 3.0, 0), (1, float("nan"), 3.0, 0), (1, 2, float("nan"), 0), (1, 2, 3.0, 2**70)):
            try:
                handler("examples/world/red_circle_left.wav", "", *values, "first")
            except gr.Error as error:
                assert "must be" in error.message, error.message
            else:
                raise SystemExit(f"accepted {{values}}")
        raise SystemExit(1)
    """
    code, err, peak, seconds = refusal(["-c", textwrap.dedent(script)], tmp_path)
    print(f"app refusals: exit {code}, {seconds:.1f} s, peak {peak:.0f} MB")
    assert code == 1 and peak < REFUSAL_MB, (code, peak, err[-2000:])
