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
from tests.conftest import TINY, BrightnessScorer, build_pipeline, tone

ROOT = Path(__file__).resolve().parents[1]

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
    text = " ".join(result.stdout.split())
    assert "(default: None)" not in text  # required flags and flags whose default depends on the models
    assert text.count("default: 3 for the world") == 1 and "default: the base model's, 25" in text and "1 to 100" in text


SLOW = str(2**70)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "1000000000"], "--steps 1000000000: must be a whole number from 1 to 100."),
        (["--num-images", "100000"], "--num-images 100000: must be a whole number from 1 to 8."),
        (["--height", "4096", "--width", "4096"], "--height 4096: must be a multiple of 8 from 8 to 1024 (pixels)."),
        (["--height", "-8"], "--height -8: must be a multiple of 8"),
        (["--height", "0"], "--height 0: must be a multiple of 8"),
        (["--width", "7"], "--width 7: must be a multiple of 8"),
        (["--height", "512"], "--height 512: this model draws 64 px pictures and serves at most 128 px"),
        (["--guidance", "nan"], "--guidance nan: must be a number from 0 to 20."),
        (["--guidance=-inf"], "--guidance -inf: must be a number"),
        (["--seed", SLOW], f"--seed {SLOW}: must be a whole number from 0 to 4294967295."),
        (["--seed", "-1"], "--seed -1: must be a whole number from 0"),
        (["--best-of", "1000"], "--best-of 1000: must be a whole number from 1 to 8."),
        (["--batch-size", "0"], "--batch-size 0: must be a whole number"),
        (["--max-windows", "100000"], "--max-windows 100000: must be a whole number"),
        (["--max-audio-seconds", "nan"], "--max-audio-seconds nan: must be a number"),
        (["--max-audio-seconds", "1e9"], "--max-audio-seconds 1000000000.0: must be a number from 0 to 600"),
        (["--strength", "1.5"], "--strength 1.5: must be a number from 0 to 1."),
        (["--text-weight", "nan"], "--text-weight nan: must be a number"),
        (["--prompt", "word " * 1000], "--prompt: 5,000 characters, over the limit of 1000"),
        (["--num-audio-tokens", "100000"], "--num-audio-tokens 100000: must be a whole number from 1 to 76."),
        (["--mask", "m.png"], "--mask marks where --init-image may change: give the --init-image too."),
        (["--out", "/proc/audio2image/out"], "--out /proc/audio2image/out: cannot write there"),
        (["--steps", "many"], "error: argument --steps: invalid int value: 'many' (see python -m generate --help)"),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_cli_settings_out_of_range_are_refused_before_loading(saved_pipeline, tmp_path, capsys, monkeypatch, extra, message):
    """Each in one line on stderr, exit status 1 (argparse's own: 2), before any model loads and with nothing written."""
    monkeypatch.setattr(cli, "_load_pipeline", lambda *a: pytest.fail("a bad setting must be refused before the models load"))
    out = tmp_path / "out"
    argv = ["--audio", str(write(tmp_path / "ok.wav", tone(1.0))), "--out", str(out), "--pipeline", str(saved_pipeline), *TINY, *extra]
    try:
        code = cli.main(argv)
    except SystemExit as stopped:
        code = stopped.code
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not out.exists()


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
        (lambda tmp: write(tmp / "text.mp3", b"just some words, not sound\n" * 10), [], "a text file, not a sound"),
        (lambda tmp: write(tmp / "photo.mp3", b"\x89PNG\r\n\x1a\n" + bytes(300)), [], "this is a PNG image, not a sound"),
        (lambda tmp: write(tmp / "noise.mp3", np.random.default_rng(0).bytes(4000)), [], "not a readable audio file: it is corrupt"),
        (lambda tmp: (tmp / "folder.wav").mkdir() or tmp / "folder.wav", [], "a folder, not a sound file"),
        (lambda tmp: os.symlink(tmp / "loop.wav", tmp / "loop.wav") or tmp / "loop.wav", [], "points back to itself"),
        (lambda tmp: write(tmp / "click.wav", np.full(1, 0.5, dtype=np.float32)), [], "too short"),
        (lambda tmp: write(tmp / "silent.wav", np.zeros(16_000, dtype=np.float32)), [], "silent"),
        (lambda tmp: write(tmp / "long.wav", tone(3.0)), ["--max-audio-seconds", "2"], r"over the 2 s limit.*\(or raise --max-audio-seconds\)"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--best-of", "2", "--clap-model", "/nonexistent"], "--clap-model /nonexistent: no such folder"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--pipeline", "/nonexistent/pipeline"], "--pipeline /nonexistent/pipeline: no such folder"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--height", "36"], "--height 36: must be a multiple of 8"),
        (lambda tmp: write(tmp / "ok.wav", tone(1.0)), ["--device", "cuda:99"], "cuda:99 asked for"),
    ],
    ids=["missing", "empty", "not-audio", "png-renamed", "random-bytes", "folder", "symlink-loop", "one-sample", "silent", "too-long",
         "no-clap-folder", "no-pipeline", "bad-size", "bad-device"],
)
def test_cli_bad_input_is_named(saved_pipeline, tmp_path, capsys, monkeypatch, audio, extra, message):
    extra = extra if "--pipeline" in extra else ["--pipeline", str(saved_pipeline), *extra]
    generated = []
    monkeypatch.setattr(cli, "_load_pipeline", lambda *a: generated.append(a) or pytest.fail("a bad input must fail before loading"))
    needs_pipeline = message == "cuda:99 asked for"
    if needs_pipeline:
        monkeypatch.undo()
    code = cli.main(["--audio", str(audio(tmp_path)), "--out", str(tmp_path / "out"), *TINY, *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert __import__("re").search(message, err), err


def test_an_out_that_is_a_file_is_refused_before_generating(saved_pipeline, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_load_pipeline", lambda *a: pytest.fail("refused only after loading the models"))
    taken = write(tmp_path / "taken.png", b"x")
    assert cli.main(["--audio", str(write(tmp_path / "ok.wav", tone(1.0))), "--out", str(taken), "--pipeline", str(saved_pipeline), *TINY]) == 1
    assert "--out" in capsys.readouterr().err and taken.read_bytes() == b"x"


def test_cli_caps_and_batches_the_windows_of_a_long_sound(saved_pipeline, clip, tmp_path, capsys):
    code = cli.main(["--audio", str(clip), "--out", str(tmp_path / "capped"), "--pipeline", str(saved_pipeline), "--window-policy", "all",
                     "--max-windows", "1", *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "2 windows of" in err and "over the limit of 1" in err and "(or raise --max-windows)" in err
    out = tmp_path / "batched"
    assert cli.main(["--audio", str(clip), "--out", str(out), "--pipeline", str(saved_pipeline), "--window-policy", "all",
                     "--num-images", "2", "--batch-size", "2", *TINY]) == 0
    assert [r["window"] for r in json.loads((out / "settings.json").read_text())["images"]] == [0, 0, 1, 1]


@pytest.mark.skipif(not (ROOT / "models" / "world" / "pipeline" / "model_index.json").is_file(), reason="models/world not built")
def test_the_offline_world_is_the_cli_default(tmp_path):
    """The README's first command on a machine with no model hub: no model flags at all."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("AUDIO2IMAGE_MODELS", "AUDIO2IMAGE_PIPELINE"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "generate", "--audio", "examples/world/red_circle_left.wav", "--out", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["resolved"]["models"] == "world" and settings["resolved"]["guidance"] == 3.0
    assert (tmp_path / "out" / "red_circle_left_w00_00.png").is_file()


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
        def from_pretrained(cls, clap_model, clip_model, vocabulary, **kwargs):
            seen.update(kwargs, clap_model=clap_model, clip_model=clip_model, vocabulary=vocabulary)
            return cls()

    import scoring.scorer
    from generate.model_sets import WORLD_MODELS, resolve_models

    monkeypatch.setattr(scoring.scorer, "AudioImageScorer", FakeScorer)
    args = cli.build_parser().parse_args(["--audio", "a.wav", "--out", "o", "--best-of", "2", "--models", "real", "--clap-model", "my/clap"])
    assert isinstance(cli._load_scorer(resolve_models(args), "cpu"), FakeScorer)
    assert seen == {"device": "cpu", "clap_model": "my/clap", "clip_model": "openai/clip-vit-large-patch14", "vocabulary": "esc50"}
    if (WORLD_MODELS / "scorer" / "vocabulary.txt").is_file():  # the world's scorer ranks over its own 72 captions
        cli._load_scorer(resolve_models(cli.build_parser().parse_args(["--audio", "a.wav", "--out", "o"])), "cpu")
        assert seen["vocabulary"] == str(WORLD_MODELS / "scorer" / "vocabulary.txt")
    args = cli.build_parser().parse_args(["--audio", "a.wav", "--out", "o", "--vocabulary", "dog", "rain"])
    cli._load_scorer(resolve_models(args), "cpu")
    assert seen["vocabulary"] == ("dog", "rain")


def test_cli_edits_a_picture_and_keeps_what_the_mask_protects(saved_pipeline, clip, tmp_path, capsys):
    from PIL import Image

    art = np.zeros((32, 32, 3), dtype=np.uint8)
    art[:, :, 0] = 200
    Image.fromarray(art).save(tmp_path / "red.png")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[16:] = 255
    Image.fromarray(mask).save(tmp_path / "bottom.png")
    out = tmp_path / "edited"
    assert cli.main(["--audio", str(clip), "--out", str(out), "--pipeline", str(saved_pipeline), "--init-image", str(tmp_path / "red.png"),
                     "--mask", str(tmp_path / "bottom.png"), "--strength", "0.8", *TINY]) == 0
    image = np.asarray(Image.open(next(out.glob("*.png"))))
    assert np.array_equal(image[:16], art[:16]) and not np.array_equal(image[16:], art[16:])
    assert cli.main(["--audio", str(clip), "--out", str(tmp_path / "x"), "--pipeline", str(saved_pipeline), "--init-image", str(tmp_path / "none.png"), *TINY]) == 1
    assert "--init-image" in capsys.readouterr().err


def test_the_world_on_a_cpu_runs_on_one_thread_unless_omp_num_threads_says_otherwise(monkeypatch):
    """bench/threads.py: one thread is as fast idle and 3.7-3.9x faster beside another job (generate.model_sets)."""
    import torch

    from generate.model_sets import WORLD_THREADS, use_threads_for

    kept = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        assert use_threads_for("real", "cpu") == 2  # the real models keep torch's default
        assert use_threads_for("world", "cuda") == 2
        assert use_threads_for("world", "cpu") == WORLD_THREADS == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert use_threads_for("world", "cpu") == 2  # the user's setting wins
    finally:
        torch.set_num_threads(kept)
