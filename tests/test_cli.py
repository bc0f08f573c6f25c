"""`python -m generate` on a saved tiny pipeline: PNGs + settings.json, --help, and errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import generate.__main__ as cli
from tests.test_pipeline import BrightnessScorer, build_pipeline, tone

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--height", "32", "--width", "32", "--quiet"]


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    build_pipeline(text_mixing=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A stereo 44.1 kHz clip of 1.6 encoder windows: two windows under --window-policy all."""
    folder = tmp_path_factory.mktemp("audio")
    seconds = 1.6 * build_pipeline().audio_encoder.window_samples / 16_000
    wave = np.stack([tone(seconds, 440.0, rate=44_100), tone(seconds, 660.0, rate=44_100)], axis=1)
    sf.write(folder / "clip.wav", wave, 44_100)
    return folder / "clip.wav"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "generate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_writes_images_and_every_setting(saved_pipeline, clip, tmp_path):
    out = tmp_path / "out"
    result = run_cli("--audio", str(clip), "--out", str(out), "--pipeline", str(saved_pipeline), "--num-images", "2",
                     "--seed", "3", "--window-policy", "all", "--prompt", "as an oil painting", *TINY)
    assert result.returncode == 0, result.stderr
    settings = json.loads((out / "settings.json").read_text())
    files = [record["file"] for record in settings["images"]]
    assert files == ["clip_w00_00.png", "clip_w00_01.png", "clip_w01_00.png", "clip_w01_01.png"]
    assert sorted(p.name for p in out.glob("*.png")) == files
    assert [r["window"] for r in settings["images"]] == [0, 0, 1, 1]
    arguments = settings["arguments"]
    assert arguments["seed"] == 3 and arguments["steps"] == 2 and arguments["prompt"] == "as an oil painting"
    assert settings["resolved"]["pipeline"] == str(saved_pipeline.resolve())
    assert settings["resolved"]["device"] == "cpu" and settings["resolved"]["dtype"] == "float32"
    assert settings["resolved"]["height"] == 32 and settings["resolved"]["scheduler"] == "DPMSolverMultistepScheduler"
    assert {"torch", "diffusers", "transformers", "python"} <= set(settings["versions"])
    assert len(settings["audio"][0]["sha256"]) == 64
    assert settings["command"].startswith("python -m generate --audio")

    # the same settings again give the same images
    again = tmp_path / "again"
    argv = settings["arguments"]
    assert cli.main(["--audio", str(clip), "--out", str(again), "--pipeline", argv["pipeline"], "--num-images", "2", "--seed", "3",
                     "--window-policy", "all", "--prompt", argv["prompt"], *TINY]) == 0
    for name in files:
        np.testing.assert_array_equal(np.asarray(__import__("PIL.Image").Image.open(out / name)),
                                      np.asarray(__import__("PIL.Image").Image.open(again / name)))


def test_cli_help_explains():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--audio", "--out", "--num-images", "--steps", "--seed", "--prompt", "--window-policy", "--guidance", "--height",
                 "--base-model", "--audio-encoder", "--pipeline", "--device", "--dtype", "--best-of", "--max-audio-seconds"):
        assert flag in result.stdout


def test_cli_bad_file_exits_with_the_message_not_a_traceback(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    result = run_cli("--audio", str(tmp_path / "broken.wav"), "--out", str(tmp_path / "out"), *TINY)
    assert result.returncode == 1
    assert "broken.wav" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def write(path: Path, data) -> Path:
    path.write_bytes(data) if isinstance(data, bytes) else sf.write(path, data, 16_000)
    return path


@pytest.mark.parametrize(
    "audio, extra, message",
    [
        (lambda tmp: tmp / "missing.wav", [], "no such file"),
        (lambda tmp: write(tmp / "empty.wav", b""), [], "empty"),
        (lambda tmp: write(tmp / "text.mp3", b"just some words, not sound\n" * 10), [], "not a readable|cannot decode"),
        (lambda tmp: write(tmp / "silent.wav", np.zeros(16_000, dtype=np.float32)), [], "silent"),
        (lambda tmp: write(tmp / "long.wav", tone(3.0)), ["--max-audio-seconds", "2"], "over the 2 s limit"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--pipeline", "/nonexistent/pipeline"], "no model_index.json"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--height", "36"], "divisible by 8"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--device", "cuda:99"], "cuda:99 asked for"),
    ],
    ids=["missing", "empty", "not-audio", "silent", "too-long", "no-pipeline", "bad-size", "bad-device"],
)
def test_cli_bad_input_is_named(saved_pipeline, tmp_path, capsys, audio, extra, message):
    extra = extra if "--pipeline" in extra else ["--pipeline", str(saved_pipeline), *extra]
    code = cli.main(["--audio", str(audio(tmp_path)), "--out", str(tmp_path / "out"), *TINY, *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ")
    assert __import__("re").search(message, err), err


def test_cli_best_of_ranks_with_the_scorer(saved_pipeline, clip, tmp_path, monkeypatch):
    scorer = BrightnessScorer()
    monkeypatch.setattr(cli, "_load_scorer", lambda args, device: scorer)
    out = tmp_path / "ranked"
    assert cli.main(["--audio", str(clip), "--out", str(out), "--pipeline", str(saved_pipeline), "--num-images", "2", "--best-of", "2", *TINY]) == 0
    records = json.loads((out / "settings.json").read_text())["images"]
    assert [r["rank"] for r in records] == [0, 1] and records[0]["score"] >= records[1]["score"]
    assert scorer.calls and scorer.calls[0][1] == 4  # 2 images × 2 candidates


def test_cli_best_of_loads_the_project_scorer_lazily(monkeypatch):
    seen = {}

    class FakeScorer:
        @classmethod
        def from_pretrained(cls, **kwargs):
            seen.update(kwargs)
            return cls()

    import generate.scoring

    monkeypatch.setattr(generate.scoring, "AudioImageScorer", FakeScorer)
    args = cli.build_parser().parse_args(["--audio", "a.wav", "--out", "o", "--best-of", "2", "--clap-model", "my/clap"])
    assert isinstance(cli._load_scorer(args, "cpu"), FakeScorer)
    assert seen == {"device": "cpu", "clap_model": "my/clap"}
