"""Evaluation runs on the synthetic audiofolder with tiny models: metrics, report, resuming, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import evaluation.__main__ as evaluate
from evaluation import clips as evaluation_clips
from evaluation import run as evaluation_run
from scoring.metrics import agreement
from architectures import tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A saved tiny pipeline, CLAP and CLIP, as the command line loads them."""
    from hearing.text_states import encode_captions
    from generate.pipeline import AudioToImagePipeline

    root = tmp_path_factory.mktemp("models")
    text_encoder, tokenizer = tiny_models.tiny_text_encoder(), tiny_models.tiny_tokenizer()
    AudioToImagePipeline(
        vae=tiny_models.tiny_vae(), audio_encoder=tiny_models.tiny_audio_encoder(empty_embedding=encode_captions([""], text_encoder, tokenizer)[0]),
        feature_extractor=tiny_models.feature_extractor(), unet=tiny_models.tiny_unet(), scheduler=tiny_models.sd21_scheduler(),
    ).save_pretrained(root / "pipeline")
    for name, (model, processor) in (("clap", tiny_models.tiny_clap()), ("clip", tiny_models.tiny_clip())):
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return root


def argv(models, data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--pipeline", str(models / "pipeline"), "--clap-model", str(models / "clap"),
            "--clip-model", str(models / "clip"), "--steps", "2", "--height", "32", "--width", "32", "--device", "cpu", "--quiet", *extra]


def count_calls(monkeypatch, fail_at: int | None = None) -> list[int]:
    """Record which clips are generated; optionally stop the run (as Ctrl-C would) when clip `fail_at` starts."""
    calls, original = [], evaluation_run.evaluate_clip

    def wrapped(clip, *args, **kwargs):
        if clip.index == fail_at:
            raise KeyboardInterrupt
        calls.append(clip.index)
        return original(clip, *args, **kwargs)

    monkeypatch.setattr(evaluation_run, "evaluate_clip", wrapped)
    return calls


def assert_same_images(folder: Path, reference: Path, clips: int, slack: int) -> None:
    """The two images of each of the first `clips` clips match the reference run's to within `slack` levels; and the
    two seeds of a clip differ by far more, so that the slack cannot hide a clip drawn with the wrong seed."""
    def pixels(where: Path, clip: int, k: int) -> np.ndarray:
        return np.asarray(Image.open(where / "images" / f"clip_{clip:05d}_{k}.png"), dtype=np.int16)

    for clip in range(clips):
        for k in range(2):
            assert np.abs(pixels(folder, clip, k) - pixels(reference, clip, k)).max() <= slack, (clip, k)
    assert np.abs(pixels(folder, 0, 0) - pixels(reference, 0, 1)).max() > 4 * max(slack, 1), "two seeds drew one picture"


@pytest.fixture(scope="module")
def full_run(models, synthetic_data, tmp_path_factory):
    """--limit 3, then the full test split (8 clips) in the same folder: the second run must do only the other 5."""
    out = tmp_path_factory.mktemp("run") / "synthetic"
    with pytest.MonkeyPatch.context() as mp:
        first = count_calls(mp)
        assert evaluate.main(argv(models, synthetic_data, out, "--num-images", "2", "--limit", "3")) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in sorted((out / "clips").iterdir()) + sorted((out / "images").iterdir())}
    with pytest.MonkeyPatch.context() as mp:
        second = count_calls(mp)
        assert evaluate.main(argv(models, synthetic_data, out, "--num-images", "2")) == 0
    return out, first, second, stamps


def test_resumed_run_skips_finished_clips(full_run):
    out, first, second, stamps = full_run
    assert first == [0, 1, 2] and second == [3, 4, 5, 6, 7]
    assert len(stamps) == 3 * 2 + 3 * 2  # json + npz, 2 images, per clip
    for name, stamp in stamps.items():
        assert (out / ("clips" if name.endswith(("json", "npz")) else "images") / name).stat().st_mtime_ns == stamp, name


def test_metrics_match_the_saved_per_clip_results(full_run):
    out = full_run[0]
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads((out / "clips" / f"clip_{i:05d}.json").read_text()) for i in range(8)]
    probs = [np.load(out / "clips" / f"clip_{i:05d}.npz") for i in range(8)]
    assert metrics["num_clips"] == metrics["num_scored_clips"] == 8 and metrics["num_images"] == 16 and metrics["failed_clips"] == []
    assert metrics["vocabulary"] == "esc50" and metrics["vocabulary_size"] == 50
    # Recompute from the files, by plain loops: AIC, agreement, and the rank score over the 8 × 16 matrix.
    assert metrics["aic_accuracy"] == pytest.approx(np.mean([a for r in records for a in r["aic"]]))
    assert metrics["mean_agreement"] == pytest.approx(np.mean([a for r in records for a in r["agreement"]]), abs=1e-6)
    images = [(c, torch.from_numpy(q)) for c, p in enumerate(probs) for q in p["image_probs"]]
    ranks = []
    for c, p in enumerate(probs):
        audio = torch.from_numpy(p["audio_probs"])
        others = [agreement(audio, q).item() for owner, q in images if owner != c]
        for q in p["image_probs"]:
            own = agreement(audio, torch.from_numpy(q)).item()
            ranks.append((c, 100 * np.mean([1.0 if o < own else 0.5 if o == own else 0.0 for o in others])))
    per_clip = [np.mean([r for c, r in ranks if c == clip]) for clip in range(8)]
    assert metrics["rank_score"] == pytest.approx(np.mean(per_clip), abs=1e-4)
    assert 0 <= metrics["rank_score"] <= 100
    assert -1 <= metrics["audio_caption_similarity"] <= 1 and -1 <= metrics["image_caption_similarity"] <= 1
    for record, p in zip(records, probs):
        assert record["caption"] and len(record["images"]) == 2
        assert np.allclose(record["agreement"], agreement(torch.from_numpy(p["audio_probs"])[None], torch.from_numpy(p["image_probs"])).numpy(), atol=1e-6)


def test_report_grid_and_plot_are_written(full_run):
    out = full_run[0]
    report = (out / "report.md").read_text()
    assert "![grid](grid.png)" in report and "![scores](scores.png)" in report and "rank score" in report
    assert "a low steady hum" in report  # the per-clip table names the captions
    with Image.open(out / "grid.png") as grid:
        assert grid.width > 2 * 160 and grid.height >= 8 * 160  # 8 clips × 2 images
    with Image.open(out / "scores.png") as plot:
        assert plot.format == "PNG"
    assert json.loads((out / "run.json").read_text())["arguments"]["num_images"] == 2


def test_interrupted_run_resumes_with_the_same_images(full_run, models, synthetic_data, tmp_path, monkeypatch):
    # Stopped while clip 2 was starting: 0 and 1 are finished, nothing of 2 and no summary exists.
    out = tmp_path / "interrupted"
    calls = count_calls(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main(argv(models, synthetic_data, out, "--num-images", "2", "--limit", "4"))
    assert calls == [0, 1]
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["clip_00000.json", "clip_00000.npz", "clip_00001.json", "clip_00001.npz"]
    assert not (out / "metrics.json").exists()
    monkeypatch.undo()
    calls = count_calls(monkeypatch)
    assert evaluate.main(argv(models, synthetic_data, out, "--num-images", "2", "--limit", "4")) == 0
    assert calls == [2, 3]
    # Per-clip seeds: the same pixels as the run that went 0-2 then 3-7 (the same process, so the same threads).
    assert_same_images(out, full_run[0], clips=4, slack=0)
    assert json.loads((out / "metrics.json").read_text())["num_clips"] == 4


def test_other_settings_in_the_same_folder_are_refused(full_run, models, synthetic_data, capsys):
    assert evaluate.main(argv(models, synthetic_data, full_run[0], "--num-images", "2", "--seed", "1")) == 1
    assert "seed: 0 → 1" in capsys.readouterr().err


def test_a_folder_made_with_other_weights_is_not_resumed(models, synthetic_data, tmp_path, capsys):
    """Models retrained into the same folders: the old clips must not count as done (their images came from other weights)."""
    import shutil

    from transformers import ClapModel

    copied = tmp_path / "models"
    shutil.copytree(models, copied)
    out = tmp_path / "run"
    assert evaluate.main(argv(copied, synthetic_data, out, "--limit", "1")) == 0
    assert evaluate.main(argv(copied, synthetic_data, out, "--limit", "2")) == 0  # the same weights: resumed
    clap = ClapModel.from_pretrained(copied / "clap")
    with torch.no_grad():
        next(clap.parameters()).add_(0.5)
    clap.save_pretrained(copied / "clap")
    capsys.readouterr()
    assert evaluate.main(argv(copied, synthetic_data, out, "--limit", "2")) == 1
    assert "the models' weight files differ" in capsys.readouterr().err


def test_audio_only_folder_with_a_corrupt_file(models, tmp_path):
    # No metadata: every audio file is a clip, there are no captions, and a corrupt file is counted, not fatal.
    data = tmp_path / "sounds"
    data.mkdir()
    rate = 16_000
    t = np.arange(rate) / rate
    sf.write(data / "a_tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    (data / "b_broken.wav").write_bytes(b"RIFF not really a wav file")
    sf.write(data / "c_noise.wav", (0.1 * np.random.default_rng(0).standard_normal(rate)).astype(np.float32), rate)
    out = tmp_path / "run"
    assert evaluate.main(argv(models, data, out, "--vocabulary", "audioset")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_clips"] == 3 and metrics["num_scored_clips"] == 2 and metrics["num_images"] == 2
    assert [f["name"] for f in metrics["failed_clips"]] == ["b_broken.wav"]
    assert metrics["audio_caption_similarity"] is None and metrics["image_caption_similarity"] is None
    assert metrics["vocabulary_size"] == 527
    assert "error" in (out / "report.md").read_text()


def test_clip_seed_depends_on_run_seed_and_index_only():
    assert evaluation_clips.clip_seed(0, 5) == evaluation_clips.clip_seed(0, 5)
    assert len({evaluation_clips.clip_seed(s, i) for s in range(3) for i in range(50)}) == 150


def test_missing_data_is_explained(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate.main(["--data", str(empty), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "no metadata.jsonl" in capsys.readouterr().err


def test_help_explains_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--pipeline", "--base-model", "--vocabulary", "--limit", "--num-images", "--caption-column", "rank_score"):
        assert flag in text


def test_two_processes_split_the_clips_and_match_one(full_run, models, synthetic_data, tmp_path):
    # torchrun with 2 CPU processes (as accelerate launch does with GPUs): each takes a share of the clips, the main
    # process writes one report, and the images are those of the single-process run.
    import sys

    from tests.conftest import run_processes  # one thread a process; a hang fails with every process's stack

    out = tmp_path / "distributed"
    done = run_processes([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "evaluation",
                          *argv(models, synthetic_data, out, "--num-images", "2", "--limit", "4")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 to do on 2 process(es)" in done.stderr
    assert done.stdout.count("AIC accuracy") == 1  # only the main process summarizes
    # One thread in each subprocess against all cores here: a sum may be added in another order and tip a pixel by a level.
    assert_same_images(out, full_run[0], clips=4, slack=2)
    assert json.loads((out / "metrics.json").read_text())["num_clips"] == 4


def test_streamed_tar_shards_with_a_bad_member_evaluate_resume_and_match_the_folder(full_run, models, synthetic_data, tmp_path, monkeypatch):
    """--shards: WebDataset tar shards read as a stream, clip by clip: the clips of the folder, in order, with the
    same seeds and so the same scores; a bad member is recorded and counted; a resumed run redoes nothing."""
    from align.streaming import write_shards

    rows = [json.loads(line) for line in (synthetic_data / "test" / "metadata.jsonl").read_text().splitlines()]
    members = [(f"clip{i:03d}", (synthetic_data / "test" / r["file_name"]).read_bytes(), "wav", r["caption"]) for i, r in enumerate(rows)]
    members.insert(3, ("broken", b"RIFF this is no wave file", "wav", "a broken member"))
    write_shards(members, tmp_path / "shards", samples_per_shard=4)  # 9 members in 3 shards
    shards = ["--shards", str(tmp_path / "shards" / "shard-{000000..000002}.tar")]
    out = tmp_path / "stream"
    stream_argv = lambda *extra: argv(models, synthetic_data, out, "--num-images", "2", *extra)[2:] + shards  # noqa: E731 (no --data)
    with pytest.MonkeyPatch.context() as mp:
        first = count_calls(mp)
        assert evaluate.main(stream_argv("--limit", "5")) == 0
    with pytest.MonkeyPatch.context() as mp:
        second = count_calls(mp)
        assert evaluate.main(stream_argv()) == 0
    assert first == [0, 1, 2, 3, 4] and second == [5, 6, 7, 8]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_clips"] == 9 and metrics["num_scored_clips"] == 8
    assert [f["name"] for f in metrics["failed_clips"]] == ["broken"]
    for i in range(3):  # before the broken member, clip i is the folder's clip i: same sound, same seed, same scores
        streamed = json.loads((out / "clips" / f"clip_{i:05d}.json").read_text())
        folder = json.loads((full_run[0] / "clips" / f"clip_{i:05d}.json").read_text())
        assert streamed["name"] == f"clip{i:03d}" and streamed["caption"] == folder["caption"]
        assert streamed["agreement"] == folder["agreement"] and streamed["seed"] == folder["seed"]


def test_streaming_flags_are_checked(tmp_path, capsys):
    for bad in (["--out", str(tmp_path)], ["--data", "x", "--shards", "y.tar", "--out", str(tmp_path)], ["--shards", "y.tar", "--streaming", "--out", str(tmp_path)]):
        with pytest.raises(SystemExit):
            evaluate.main(bad)
    assert "--streaming streams the Hub dataset" in capsys.readouterr().err
    assert evaluate.main(["--shards", str(tmp_path / "none-{000..001}.tar"), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "the stream could not be opened" in capsys.readouterr().err


def test_hub_datasets_are_read_lazily_with_and_without_captions(synthetic_data, monkeypatch):
    # A Hub dataset stands in as an in-memory `datasets.Dataset` (no network): an audio column of files plus captions.
    import datasets

    rows = [json.loads(line) for line in (synthetic_data / "test" / "metadata.jsonl").read_text().splitlines()]
    paths = [str(synthetic_data / "test" / r["file_name"]) for r in rows]
    table = datasets.Dataset.from_dict({"audio": paths, "caption": [r["caption"] for r in rows]}).cast_column("audio", datasets.Audio())
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None, **kw: asked.append((name, split)) or table)
    clips = evaluation_clips.read_clips("user/sounds", "test")
    assert asked == [("user/sounds", "test")]
    assert [c.caption for c in clips] == [r["caption"] for r in rows] and clips[3].name == "user/sounds[test]#3"
    assert callable(clips[3].source)  # nothing read yet
    assert np.allclose(evaluation_clips.read_audio(clips[3].source, None), sf.read(paths[3], dtype="float32")[0], atol=1e-6)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None, **kw: table.remove_columns("caption"))
    clips = evaluation_clips.read_clips("user/sounds", "test")
    assert len(clips) == len(rows) and all(c.caption is None for c in clips)
    assert evaluation_clips.read_audio(clips[0].source, None).shape == sf.read(paths[0])[0].shape


def test_a_clip_over_the_length_limit_is_counted_not_decoded(models, tmp_path):
    import soundfile as sf

    data = tmp_path / "clips"
    data.mkdir()
    for name, seconds in (("short.wav", 1.0), ("long.wav", 3.0)):
        sf.write(data / name, 0.3 * np.sin(np.arange(int(seconds * 16_000)) / 5).astype(np.float32), 16_000)
    (data / "metadata.jsonl").write_text('{"file_name": "short.wav", "caption": "a hum"}\n{"file_name": "long.wav", "caption": "a tone"}\n')
    out = tmp_path / "run"
    assert evaluate.main(argv(models, data, out, "--max-audio-seconds", "2")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_clips"] == 2 and metrics["num_scored_clips"] == 1
    long = json.loads((out / "clips" / "clip_00001.json").read_text())
    assert "over the 2 s limit" in long["error"]


def test_evaluation_chooses_models_as_the_cli_and_app_do(monkeypatch):
    from generate.model_sets import resolve_models

    for name in ("AUDIO2IMAGE_MODELS", "AUDIO2IMAGE_PIPELINE", "AUDIO2IMAGE_VOCABULARY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("generate.model_sets.WORLD_MODELS", Path("/nonexistent/world"))
    with pytest.raises(FileNotFoundError, match="world.rebuild"):  # the world is the default here too
        resolve_models(evaluate.build_parser().parse_args(["--data", "d", "--out", "o"]))
    monkeypatch.setenv("AUDIO2IMAGE_MODELS", "real")
    real = resolve_models(evaluate.build_parser().parse_args(["--data", "d", "--out", "o", "--vocabulary", "dog", "rain"]))
    assert (real.models, real.pipeline, real.guidance, real.vocabulary) == ("real", None, 7.5, ("dog", "rain"))


def test_both_modes_run_on_the_same_clips_and_are_compared(models, synthetic_data, tmp_path):
    import shutil

    from architectures import tiny_models

    own = tmp_path / "models"
    shutil.copytree(models, own)
    tiny_models.tiny_text_encoder().save_pretrained(own / "pipeline" / "text_encoder")  # cascade draws with the text path
    tiny_models.tiny_tokenizer().save_pretrained(own / "pipeline" / "tokenizer")
    index = json.loads((own / "pipeline" / "model_index.json").read_text())
    index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"])
    (own / "pipeline" / "model_index.json").write_text(json.dumps(index))
    out = tmp_path / "both"
    assert evaluate.main(argv(own, synthetic_data, out, "--mode", "both", "--limit", "3")) == 0
    direct, cascade = (json.loads((out / m / "metrics.json").read_text()) for m in ("direct", "cascade"))
    assert direct["num_scored_clips"] == cascade["num_scored_clips"] == 3
    table = (out / "comparison.md").read_text()
    assert "| metric | direct | cascade |" in table and f"{direct['rank_score']:.1f}" in table and f"{cascade['rank_score']:.1f}" in table
    records = [json.loads((out / "cascade" / "clips" / f"clip_{i:05d}.json").read_text()) for i in range(3)]
    assert all(r["seed"] == json.loads((out / "direct" / "clips" / f"clip_{i:05d}.json").read_text())["seed"] for i, r in enumerate(records))
