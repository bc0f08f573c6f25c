"""The world in miniature: its checker, its builder, its held-out voices, and the shipped models it trained.

The last tests load the weights shipped in models/world (skipped, with the reason, when they are absent) and
check that held-out voices speaking captions give pictures whose colour and shape the model-free checker
confirms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from world.build import TEST_VOICES, TRAIN_VOICES, build_world, espeak, trim_silence
from world.checker import accuracy, check_image
from world.scenes import COLOURS, POSITIONS, SHAPES, SOUND_CLASSES, all_scenes, render, world_scenes
from world.stage import Budget

MODELS = Path(__file__).resolve().parents[1] / "models" / "world"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")


def test_every_combination_has_its_own_caption():
    scenes = all_scenes()
    assert len(scenes) == len(SHAPES) * len(COLOURS) * len(POSITIONS)
    assert len({s["caption"] for s in scenes}) == len(scenes)
    assert all(s["colour"] in s["caption"] and s["shape"] in s["caption"] for s in scenes)


def test_checker_reads_real_renders():
    rng = np.random.default_rng(7)
    scenes = all_scenes() * 4
    images = [render(s["shape"], s["colour"], s["position"], rng) for s in scenes]
    scores = accuracy(images, scenes)
    assert min(scores["colour"], scores["shape"], scores["position"]) >= 0.95, scores


def test_checker_sees_nothing_in_a_blank_or_noisy_picture():
    assert check_image(Image.new("RGB", (32, 32), (230, 230, 230))) == {"colour": None, "shape": None, "position": None}
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    verdict = check_image(noise)  # noise is never a confident, specific scene every time; it must not crash
    assert set(verdict) == {"colour", "shape", "position"}


def test_checker_tells_apart_what_the_captions_tell_apart():
    rng = np.random.default_rng(3)
    for shape in SHAPES:
        assert check_image(render(shape, "blue", "middle", rng))["shape"] == shape
    for colour in COLOURS:
        assert check_image(render("square", colour, "left", rng))["colour"] == colour
    for position in POSITIONS:
        assert check_image(render("circle", "red", position, rng))["position"] == position


def test_held_out_voices_are_not_training_voices():
    assert not set(TRAIN_VOICES) & set(TEST_VOICES)
    train_accents = {v.split("+")[0] for v in TRAIN_VOICES}
    train_variants = {v.split("+")[1] for v in TRAIN_VOICES}
    for voice in TEST_VOICES:  # neither the accent nor the timbre is ever heard in training
        accent, variant = voice.split("+")
        assert accent not in train_accents and variant not in train_variants


def test_a_voice_cannot_be_both_trained_on_and_held_out(tmp_path):
    with pytest.raises(ValueError, match="both trained on and held out"):
        build_world(tmp_path, 1, 1, 1, train_voices=TRAIN_VOICES[:1], test_voices=TRAIN_VOICES[:1])


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("world")
    build_world(out, images_per_caption=1, clips_per_voice=1, test_clips_per_voice=1, train_voices=TRAIN_VOICES[:1])
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_builder_writes_the_expected_layout(small_world):
    manifest = json.loads((small_world / "world.json").read_text())
    assert manifest["images"] == 72 and manifest["train_clips"] == 72 and manifest["test_clips"] == 72 * len(TEST_VOICES)
    images = _rows(small_world / "images" / "metadata.jsonl")
    assert {r["caption"] for r in images} == {s["caption"] for s in all_scenes()}
    first = Image.open(small_world / "images" / images[0]["file_name"])
    assert first.size == (32, 32) and first.mode == "RGB"
    for split in ("train", "test"):
        rows = _rows(small_world / "audio" / split / "metadata.jsonl")
        wave, rate = sf.read(small_world / "audio" / split / rows[0]["file_name"])
        assert rate == 16_000 and 0.5 < len(wave) / rate < 4.0 and np.abs(wave).max() > 0.1
        assert {"file_name", "caption", "voice", "speed", "pitch"} <= set(rows[0])


def test_built_world_keeps_held_out_voices_out_of_training(small_world):
    train = {r["voice"] for r in _rows(small_world / "audio" / "train" / "metadata.jsonl")}
    test = {r["voice"] for r in _rows(small_world / "audio" / "test" / "metadata.jsonl")}
    assert train == {TRAIN_VOICES[0]} and test == set(TEST_VOICES)


def test_budget_stops_on_steps_or_time_and_ends_at_a_low_learning_rate():
    budget = Budget(steps=10)
    factors = []
    while budget.next():
        factors.append(budget.lr_factor())
    assert budget.step == 10 and factors[-1] < 0.05 and max(factors) > 0.9
    timed = Budget(steps=10**9, minutes=1e-9)
    assert not timed.next()


# -- the shipped weights -----------------------------------------------------------------------------------

shipped = pytest.mark.skipif(not (MODELS / "pipeline" / "model_index.json").exists(),
                             reason="models/world is absent: build it with `python -m world.rebuild`")
# Captions covering every colour, shape and position, spoken by the held-out voices (chance: colour 1 in 6, shape 1 in 4).
PROBES = [("red", "circle", "left"), ("blue", "square", "right"), ("yellow", "triangle", "middle"), ("green", "cross", "left"),
          ("orange", "square", "middle"), ("purple", "circle", "right"), ("red", "triangle", "right"), ("blue", "cross", "middle")]


@shipped
def test_shipped_models_are_small_safetensors():
    files = [f for f in MODELS.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    assert sum(f.stat().st_size for f in files) < 45e6


@shipped
@needs_espeak
def test_shipped_pipeline_draws_what_held_out_voices_say():
    from generate.pipeline import AudioToImagePipeline
    from world.scenes import caption

    pipe = AudioToImagePipeline.from_pretrained(MODELS / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    waves = [trim_silence(espeak(caption(s, c, p), TEST_VOICES[i % 2], 160, 50)) for i, (c, s, p) in enumerate(PROBES)]
    images = pipe([(16_000, w) for w in waves], num_inference_steps=25, guidance_scale=3.0,
                  generator=[torch.Generator().manual_seed(i) for i in range(len(waves))]).images
    assert images[0].size == (32, 32)
    verdicts = [check_image(im) for im in images]
    colours = sum(v["colour"] == c for v, (c, _, _) in zip(verdicts, PROBES))
    shapes = sum(v["shape"] == s for v, (_, s, _) in zip(verdicts, PROBES))
    assert colours >= 6 and shapes >= 5, verdicts  # chance would give about 1.3 and 2 of 8


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "world"


@shipped
def test_every_shipped_example_draws_its_caption_for_3_of_4_seeds():
    """The sounds the app offers first (examples/world: held-out voices of several engines, one of them the engine
    never heard in training): each must give its caption's colour, shape and position for at least 3 seeds of 4."""
    from generate.pipeline import AudioToImagePipeline

    pipe = AudioToImagePipeline.from_pretrained(MODELS / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    examples = sorted(EXAMPLES.glob("*.wav"))
    assert len(examples) >= 4
    misses = {}
    for path in examples:
        colour, shape, position = path.stem.split("_")  # red_circle_left.wav
        images = pipe(str(path), num_images_per_prompt=4, num_inference_steps=25, guidance_scale=3.0,
                      generator=[torch.Generator().manual_seed(seed) for seed in range(4)]).images
        verdicts = [check_image(image) for image in images]
        right = sum(v == {"colour": colour, "shape": shape, "position": position} for v in verdicts)
        if right < 3:
            misses[path.name] = verdicts
    assert not misses, misses


@shipped
@pytest.mark.skipif(not (MODELS / "scorer" / "vocabulary.txt").exists()
                    or SOUND_CLASSES[0].caption not in (MODELS / "scorer" / "vocabulary.txt").read_text(),
                    reason="the shipped models do not hear the everyday sounds yet (world/README.md, 'Everyday sounds')")
def test_every_shipped_sound_example_draws_its_class_for_3_of_4_seeds():
    """The real recordings of examples/world/sounds (each from a source package no stage trained on), once the shipped
    models hear the sounds."""
    from generate.pipeline import AudioToImagePipeline
    from world.checker import check_sound

    pipe = AudioToImagePipeline.from_pretrained(MODELS / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    examples = sorted((EXAMPLES / "sounds").glob("*.wav"))
    assert len(examples) >= 4 and (EXAMPLES / "sounds" / "ATTRIBUTION.md").read_text().count(".wav |") == len(examples)
    misses = {}
    for path in examples:
        images = pipe(str(path), num_images_per_prompt=4, num_inference_steps=25, guidance_scale=3.0,
                      generator=[torch.Generator().manual_seed(seed) for seed in range(4)]).images
        seen = [check_sound(image) for image in images]
        if sum(s == path.stem for s in seen) < 3:
            misses[path.name] = seen
    assert not misses, misses


@shipped
@needs_espeak
def test_shipped_scorer_hears_the_spoken_colour():
    from scoring.scorer import AudioImageScorer
    from world.scenes import caption

    scorer = AudioImageScorer.from_pretrained(str(MODELS / "scorer" / "clap"), str(MODELS / "scorer" / "clip"),
                                              vocabulary=str(MODELS / "scorer" / "vocabulary.txt"), device="cpu")
    entries = scorer.vocabulary.entries
    hits = 0
    for i, (c, s, p) in enumerate(PROBES):
        wave = trim_silence(espeak(caption(s, c, p), TEST_VOICES[i % 2], 160, 50))
        probs = scorer.audio_distribution(scorer.embed_audio([wave]))[0]
        hits += c in entries[int(probs.argmax())]
    assert hits >= 4  # chance would give about 1.3 of 8


def test_the_picture_to_edit_differs_from_the_spoken_caption_in_every_attribute():
    from world.edit_eval import other_scene
    from world.scenes import all_scenes, caption

    for scene in all_scenes():
        other = other_scene(scene)
        assert all(other[k] != scene[k] for k in ("shape", "colour", "position"))
        assert other["caption"] == caption(other["shape"], other["colour"], other["position"])


def test_rebuild_runs_the_picture_side_first_and_pretraining_only_when_asked(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild

    ran, commands = [], []
    monkeypatch.setattr(rebuild.subprocess, "run", lambda cmd, **kw: ran.append(cmd[2]) or commands.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    paths = ["--world", str(tmp_path / "w"), "--runs", str(tmp_path / "r"), "--models", str(tmp_path / "m")]
    rebuild.main(paths)
    assert ran == ["world.build", "world.sounds", "world.train_clip", "world.train_vae", "world.train_unet", "world.train_unet",
                   "world.train_words", "world.train_vae", "world.train_unet", "world.train_audio", "world.train_audio",
                   "world.train_audio", "world.train_audio", "world.train_audio", "world.train_clap", "world.assemble", "world.evaluate", "world.edit_eval"]
    runs = tmp_path / "r"
    by_out = {Path(c[c.index("--out") + 1]).name: c for c in commands if "--out" in c}
    # each later learning-rate cycle starts from the weights the cycle before it finished; a sound stage from the committed
    # speech world where this machine has no run of the stage before it (here none ran: subprocess.run is a stand-in)
    for out, init in (("sharpen", runs / "unet/unet"), ("refine", runs / "audio/final"), ("polish", runs / "refine/final"),
                      ("sound_vae", rebuild.STAGE_INPUTS / "vae/vae"), ("sound_unet", rebuild.STAGE_INPUTS / "sharpen/unet"),
                      ("sound_ears", rebuild.STAGE_INPUTS / "polish/final"), ("sound_mix", runs / "sound_ears/final")):
        assert by_out[out][by_out[out].index("--init") + 1] == str(init), out
    assert by_out["words"][by_out["words"].index("--clip") + 1] == str(rebuild.STAGE_INPUTS / "clip")
    for out in ("sound_unet", "audio", "refine", "polish", "sound_ears", "sound_mix"):  # the text tower that knows the sounds' words
        assert by_out[out][by_out[out].index("--clip") + 1] == str(runs / "words"), out
    assert by_out["sound_unet"][by_out["sound_unet"].index("--vae") + 1] == str(runs / "sound_vae")
    assert by_out["unet"][by_out["unet"].index("--clip") + 1] == str(runs / "clip")
    for stage in ("build", "sounds", "clip", "vae", "unet", "sharpen", "words", "sound_vae", "sound_unet"):  # the picture side finished
        marker = rebuild.finished_marker(stage, tmp_path / "w", runs, tmp_path / "m")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    (runs / "vae" / "vae").mkdir(parents=True)  # a run of this machine's own is preferred to the committed copy
    assert rebuild.stage_input(runs, "vae/vae") == runs / "vae/vae"
    ran.clear()
    rebuild.main([*paths, "--pretrain-speech", "--from", "speech"])  # the sound side again, with pretraining
    assert ran == ["world.sentences", "world.pretrain_speech", *["world.train_audio"] * 5,
                   "world.train_clap", "world.assemble", "world.evaluate", "world.edit_eval"]


def test_a_rebuild_from_the_committed_speech_world_runs_only_the_data_and_the_sound_stages(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild

    ran, commands = [], []
    monkeypatch.setattr(rebuild.subprocess, "run", lambda cmd, **kw: ran.append(cmd[2]) or commands.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    rebuild.main(["--world", str(tmp_path / "w"), "--runs", str(tmp_path / "r"), "--models", str(tmp_path / "m"), "--from-committed"])
    assert ran == ["world.build", "world.sounds", "world.train_words", "world.train_vae", "world.train_unet", "world.train_audio",
                   "world.train_audio", "world.train_clap", "world.assemble", "world.evaluate", "world.edit_eval"]
    build = commands[0]
    assert build[build.index("--clips-per-caption") + 1] == "48"
    for part in ("clip", "vae/vae", "sharpen/unet", "polish/final/model.safetensors"):  # what the sound stages go on from is committed
        assert (rebuild.STAGE_INPUTS / part).exists(), part


def test_a_killed_rebuild_from_a_stage_resumes_with_the_plain_command_and_never_resumes_an_old_finished_run(tmp_path, monkeypatch):
    import subprocess

    from world import rebuild

    world, runs, models = tmp_path / "w", tmp_path / "r", tmp_path / "m"
    paths = ["--world", str(world), "--runs", str(runs), "--models", str(models)]
    ran, kill_at, seen_while_running = [], [], []

    def fake_run(cmd, **kwargs):  # a stage "trains": a checkpoint in its folder, then its marker, unless killed first
        stage = cmd[-1]
        ran.append(stage)
        time.sleep(0.2 if stage in kill_at else 0.05)  # several heartbeats (times are saved to 0.1 s)
        if stage in kill_at:  # what a hard kill (no exit code) would leave behind: the time the heartbeat saved so far
            seen_while_running.append(json.loads((runs / "timings.json").read_text())["stopped"][stage])
        folder = rebuild.run_folder(stage, world, runs, models)
        if folder is not None:
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            (folder / "checkpoints" / f"checkpoint-{len(ran)}").write_text(stage)
        if stage in kill_at:
            return subprocess.CompletedProcess(cmd, 1)
        marker = rebuild.finished_marker(stage, world, runs, models)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(rebuild, "stage_command", lambda stage, *a: ["python", "-m", stage])
    monkeypatch.setattr(rebuild, "HEARTBEAT_SECONDS", 0.01)
    monkeypatch.setattr(rebuild, "RESULTS_FILE", tmp_path / "RESULTS.md")  # a finished evaluation rewrites it
    monkeypatch.setattr(rebuild.subprocess, "run", fake_run)
    rebuild.main(paths)
    everything = [s for s in rebuild.STAGES if s not in rebuild.PRETRAINING]
    assert ran == everything
    old_audio = sorted((runs / "audio" / "checkpoints").iterdir())

    ran.clear()
    kill_at.append("refine")
    with pytest.raises(SystemExit):
        rebuild.main([*paths, "--from", "audio"])
    assert ran == ["audio", "refine"]
    assert sorted((runs / "audio.previous" / "checkpoints").iterdir())[0].name == old_audio[0].name  # the old run kept aside
    assert [c.name for c in (runs / "audio" / "checkpoints").iterdir()] == ["checkpoint-1"]  # the new run did not resume it
    killed = sorted(c.name for c in (runs / "refine" / "checkpoints").iterdir())
    timings = json.loads((runs / "timings.json").read_text())
    killed_seconds = timings["stopped"]["refine"]  # the killed attempt's time was saved while it ran
    assert killed_seconds >= 0.04 and "refine" not in timings.get("interrupted", {})
    assert seen_while_running[0] > 0  # saved while the stage still ran, not only when it exited

    ran.clear()
    kill_at[:] = ["assemble"]  # killed again, in a stage whose marker (models/) is no run folder's
    with pytest.raises(SystemExit):
        rebuild.main(paths)  # the plain command: refine resumes its own checkpoints, and every stage after it is redone
    assert ran == everything[everything.index("refine"):everything.index("assemble") + 1]
    assert killed[0] in {c.name for c in (runs / "refine" / "checkpoints").iterdir()}
    timings = json.loads((runs / "timings.json").read_text())  # refine's time is both attempts'
    assert timings["interrupted"]["refine"] == killed_seconds and "refine" not in timings["stopped"]
    assert rebuild.stage_seconds(timings, "refine") == pytest.approx(killed_seconds + timings["stages"]["refine"])
    ran.clear()
    kill_at.clear()
    rebuild.main(paths)  # the old assemble, evaluate and edit markers still stand, yet all three are redone
    assert ran == ["assemble", "evaluate", "edit"]
    assert json.loads((runs / "redo.json").read_text()) == []
    ran.clear()
    rebuild.main(paths)
    assert ran == []
    ran.clear()
    rebuild.main([*paths, "--from", "refine"])  # refine redone from scratch: the old run's stopped attempt is not its time
    assert "refine" not in json.loads((runs / "timings.json").read_text()).get("interrupted", {})

    ran.clear()  # a plain run that finds a stage unfinished redoes every stage after it, even after being killed itself
    rebuild.finished_marker("audio", world, runs, models).unlink()
    kill_at[:] = ["refine"]
    with pytest.raises(SystemExit):
        rebuild.main(paths)
    ran.clear()
    kill_at.clear()
    rebuild.main(paths)
    assert ran == everything[everything.index("refine"):]


def test_evaluation_table_names_the_held_out_engine_and_each_engine_and_voice():
    from world.evaluate import markdown

    def scores(value, images):
        return {"colour": value, "shape": value, "position": value, "all": value, "images": images}

    results = {"settings": {"steps": 25, "guidance": 3.0, "test_voices": ["flite/rms", "pico/en-GB"], "held_out_engine": "piper", "captions": 72},
               "spoken": scores(0.5, 144), "spoken_engine": scores(0.25, 72), "text": scores(1.0, 144), "random": scores(0.1, 144),
               "per_engine": {"flite": scores(0.75, 72), "pico": scores(0.25, 72), "piper": scores(0.25, 72)},
               "per_voice": {"flite/rms": scores(0.75, 72), "pico/en-GB": scores(0.25, 72), "piper/joe": scores(0.25, 72)}}
    table = markdown(results)
    assert "| spoken caption → image (the engine never heard: piper) | 25.0 % | 25.0 % | 25.0 % | 25.0 % |" in table
    assert "| flite | 72 | 75.0 % | 75.0 % | 75.0 % | 75.0 % |" in table
    assert "| piper/joe | 72 | 25.0 % |" in table
    assert "144 clips of 2 held-out voices, 72 of the held-out engine (72 captions)" in table and "used by no stage" not in table
    results["spoken_unheard"], results["settings"]["unheard_engines"] = scores(0.5, 144), ["rhvoice", "sam"]
    table = markdown(results)
    assert "| spoken caption → image (engines outside the named list, used by no stage: rhvoice, sam) | 50.0 % |" in table
    assert "72 of the held-out engine, 144 of engines no stage uses (72 captions)" in table


def test_train_audio_init_needs_a_finished_encoder_and_excludes_pretrained(tmp_path):
    from world import train_audio

    with pytest.raises(SystemExit, match="no model.safetensors there"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--init", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="not both"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--init", str(tmp_path), "--pretrained", str(tmp_path)])


def test_speech_repeat_lists_each_spoken_row_that_many_times_and_each_sound_once(tmp_path):
    from world import train_audio

    audio = tmp_path / "audio"
    rows = {"train": [{"file_name": "a.wav", "caption": "a red circle on the left", "engine": "flite"},
                      {"file_name": "sound_dog_0.wav", "caption": "a dog barking", "sound": "dog"}],
            "test": [{"file_name": "b.wav", "caption": "a blue square in the middle", "engine": "pico"}]}
    for part, part_rows in rows.items():
        (audio / part).mkdir(parents=True)
        for row in part_rows:
            (audio / part / row["file_name"]).write_bytes(row["file_name"].encode())
        (audio / part / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part_rows))
    assert train_audio.training_folder(audio, tmp_path / "out", 1) == audio  # once each: the world's own folder
    mix = train_audio.training_folder(audio, tmp_path / "out", 3)
    listed = [json.loads(line)["file_name"] for line in (mix / "train" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(listed) == ["a.wav"] * 3 + ["sound_dog_0.wav"]
    assert (mix / "train" / "a.wav").read_bytes() == b"a.wav" and (mix / "train" / "a.wav").stat().st_ino == (audio / "train" / "a.wav").stat().st_ino
    assert (mix / "test" / "metadata.jsonl").read_text() == (audio / "test" / "metadata.jsonl").read_text()
    assert train_audio.training_folder(audio, tmp_path / "out", 2) == mix  # a different repeat rewrites the rows
    assert len((mix / "train" / "metadata.jsonl").read_text().splitlines()) == 3
    with pytest.raises(SystemExit, match="--speech-repeat 0"):
        train_audio.main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--speech-repeat", "0"])


@pytest.mark.parametrize("hardware", [True, False])
def test_train_audio_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, hardware):
    from world import train_audio

    monkeypatch.setattr(train_audio, "cpu_has_bf16", lambda: hardware)
    precision = {choice: train_audio.training_precision(choice) for choice in ("auto", "bf16", "fp32")}
    assert precision == {"auto": "bf16" if hardware else "no", "bf16": "bf16", "fp32": "no"}
    args = argparse.Namespace(world="w", steps=4, lr=1e-3, seed=0, num_workers=0, warp_frequencies=0.0, freq_masks=0, extra_negatives=72, precision="auto",
                              speech_repeat=1)
    line = train_audio.align_arguments(args, Path("init"), Path("out"), Path("clip"), batch_size=8)
    assert line[line.index("--mixed-precision") + 1] == precision["auto"]
    assert line[line.index("--extra-negatives") + 1] == "72"
    assert line[line.index("--data-dir") + 1] == str(Path("w") / "audio")
    args.speech_repeat = 2  # the spoken rows repeated: align.train reads the stage's own mixed folder
    line = train_audio.align_arguments(args, Path("init"), Path("out"), Path("clip"), batch_size=8)
    assert line[line.index("--data-dir") + 1] == str(Path("out") / "mix")


def test_results_name_the_precision_and_extra_negatives_of_each_alignment_stage(tmp_path):
    from world.rebuild import results_markdown

    for stage, precision, negatives in (("refine", None, 0), ("polish", "bf16", 72)):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "args.json").write_text(json.dumps({"mixed_precision": precision, "extra_negatives": negatives}))
        (tmp_path / stage / "metrics.json").write_text(json.dumps({"latest": {"step": 4400, "cosine": 0.89}}))
    table = results_markdown(tmp_path, {"stages": {"refine": 60.0, "polish": 120.0}}, "python -m world.rebuild")
    assert "| refine | 1.0 | align.train in fp32, 4400 steps;" in table
    assert "| polish | 2.0 | align.train in bf16 autocast, 72 cached captions added as negatives a step, 4400 steps;" in table and "| **total** | **3.0** |" in table


def test_results_say_which_stages_ran_on_an_earlier_build_of_the_world(tmp_path):
    import os

    from world.rebuild import results_markdown

    runs, world = tmp_path / "runs", tmp_path / "world"
    for stage in ("refine", "polish"):
        (runs / stage / "final").mkdir(parents=True)
        (runs / stage / "final" / "model.safetensors").write_bytes(b"")
    world.mkdir()
    (world / "world.json").write_text("{}")
    os.utime(world / "world.json", (2_000, 2_000))
    os.utime(runs / "refine" / "final" / "model.safetensors", (1_000, 1_000))  # refine finished before the build
    os.utime(runs / "polish" / "final" / "model.safetensors", (3_000, 3_000))  # polish after it
    table = results_markdown(runs, {"stages": {"build": 60.0, "refine": 60.0, "polish": 60.0}},
                             "python -m world.rebuild", world, tmp_path / "models")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "earlier build" in rows["refine"]
    assert "earlier build" not in rows["polish"] and "earlier build" not in rows["build"]


def test_results_say_when_the_clap_started_again_from_another_seed(tmp_path):
    from world.rebuild import results_markdown

    rows = {}
    for seeds in ([0], [0, 1], [0, 1, 2]):
        (tmp_path / "runs" / "clap").mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / "clap" / "metrics.json").write_text(json.dumps({"steps": 4500, "seeds": seeds, "held_out_retrieval": {"test": {"caption": 0.5}}}))
        table = results_markdown(tmp_path / "runs", {"stages": {"clap": 600.0}}, "python -m world.rebuild", None, tmp_path / "models")
        rows[len(seeds)] = next(line for line in table.splitlines() if line.startswith("| clap |"))
    assert "seed" not in rows[1] and "from seed 1 (seed 0 stalled above log 6 and was dropped)" in rows[2]
    assert "from seed 2 (seeds 0, 1 stalled above log 6 and were dropped)" in rows[3]


@pytest.mark.parametrize("stall_loss, seeds", [(float("inf"), [0]), (-1.0, [0, 1, 2])])
def test_a_stalled_clap_run_starts_again_with_the_next_seed(small_world, tmp_path, monkeypatch, stall_loss, seeds):
    import world.train_clap as train_clap

    monkeypatch.setattr(train_clap, "STALL_LOSS", stall_loss)  # inf: never stalled; -1: always stalled
    metrics = train_clap.main(["--world", str(small_world), "--out", str(tmp_path / "clap"), "--steps", "4", "--restarts", "2"])
    assert metrics["seeds"] == seeds and metrics["steps"] == 4  # the last try always runs its whole budget
    assert (tmp_path / "clap" / "clap" / "model.safetensors").exists()


def test_train_unet_init_continues_from_the_given_unet(tmp_path):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from architectures import tiny_models
    from world import train_unet
    from world.settings import TEXT_HIDDEN, world_tokenizer

    clip, vae = tmp_path / "clip", tmp_path / "vae"
    world_tokenizer().save_pretrained(clip / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=39, bos_token_id=49406, eos_token_id=49407)).save_pretrained(clip / "text_encoder")
    tiny_models.tiny_vae().save_pretrained(vae / "vae")  # the stage reads only its scaling factor
    save_file({"mean": torch.randn(4, 4, 8, 8), "std": torch.full((4, 4, 8, 8), 0.1), "caption_ids": torch.arange(4)}, vae / "latents.safetensors")
    start = train_unet.make_unet(seed=5)
    start.save_pretrained(tmp_path / "start")
    common = ["--clip", str(clip), "--vae", str(vae), "--steps", "1", "--batch-size", "2", "--lr", "0"]
    train_unet.main([*common, "--out", str(tmp_path / "continued"), "--init", str(tmp_path / "start")])
    train_unet.main([*common, "--out", str(tmp_path / "fresh")])

    def weights(folder):
        return UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True).state_dict()

    # at learning rate 0 a run saves the weights it started from: the given UNet with --init, a fresh one without
    continued, fresh, given = weights(tmp_path / "continued"), weights(tmp_path / "fresh"), start.state_dict()
    assert all(torch.equal(continued[k], given[k]) for k in given)
    assert not all(torch.equal(fresh[k], given[k]) for k in given)


def test_assemble_ships_the_sound_stages_parts_and_the_ears_it_is_given(tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from hearing.encoder import load_audio_encoder
    from architectures import tiny_models
    from world import assemble

    runs = tmp_path / "runs"
    tiny_models.tiny_vae().save_pretrained(runs / "sound_vae" / "vae")
    tiny_models.tiny_unet().save_pretrained(runs / "sound_unet" / "unet")
    DPMSolverMultistepScheduler().save_pretrained(runs / "sound_unet" / "scheduler")
    tiny_models.tiny_text_encoder().save_pretrained(runs / "words" / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(runs / "words" / "tokenizer")
    for stage, name, (model, processor) in (("words", "clip", tiny_models.tiny_clip()), ("clap", "clap", tiny_models.tiny_clap())):
        model.save_pretrained(runs / stage / name)
        processor.save_pretrained(runs / stage / name)
    for shift, folder in ((0.0, runs / "sound_mix" / "final"), (0.25, tmp_path / "trial" / "final")):
        encoder = tiny_models.tiny_audio_encoder()  # built the same each time: the trial's weights are moved
        with torch.no_grad():
            for weight in encoder.parameters():
                weight.add_(shift)
        encoder.save_pretrained(folder)
        tiny_models.feature_extractor().save_pretrained(folder)

    def shipped_ears_match(out, source):
        shipped, given = load_audio_encoder(out / "pipeline" / "audio_encoder").state_dict(), load_audio_encoder(source).state_dict()
        return all(torch.equal(shipped[k], given[k].half().float()) for k in given)

    assemble.main(["--runs", str(runs), "--out", str(tmp_path / "default")])
    assert f"{len(SOUND_CLASSES)} everyday sounds" in (tmp_path / "default" / "README.md").read_text()
    assemble.main(["--runs", str(runs), "--out", str(tmp_path / "tried"), "--audio-encoder", str(tmp_path / "trial" / "final")])
    assert shipped_ears_match(tmp_path / "default", runs / "sound_mix" / "final")
    assert shipped_ears_match(tmp_path / "tried", tmp_path / "trial" / "final")
    assert not shipped_ears_match(tmp_path / "tried", runs / "sound_mix" / "final")
    assert (tmp_path / "tried" / "scorer" / "vocabulary.txt").read_text().count("\n") == 1 + len(world_scenes())
    with pytest.raises(SystemExit):
        assemble.main(["--runs", str(runs), "--out", str(tmp_path / "none"), "--audio-encoder", str(tmp_path / "missing")])


def test_misheard_counts_which_word_the_top_caption_put_for_which_commonest_first():
    from world.train_audio import misheard

    said = [{"colour": "blue", "shape": "circle", "position": "left"}] * 3 + [{"colour": "red", "shape": "cross", "position": "right"}]
    heard = [{"colour": "green", "shape": "circle", "position": "right"}, {"colour": "blue", "shape": "circle", "position": "right"},
             {"colour": "blue", "shape": "circle", "position": "left"}, {"colour": "red", "shape": "square", "position": "right"}]
    assert misheard(heard, said) == {"left → right": 2, "blue → green": 1, "cross → square": 1}
    assert list(misheard(heard, said))[0] == "left → right"
    assert misheard(said, said) == {}


def test_the_sound_table_gives_each_condition_per_held_out_set_and_each_class():
    from world.evaluate import sound_markdown

    def scores(value, images):
        return {"sound": value, "all": value, "images": images}

    part = {"direct": scores(0.8, 64), "text": scores(1.0, 64), "random": scores(0.05, 64), "cascade": scores(0.5, 64),
            "per_class": {"dog": scores(0.75, 4)}, "sources": ["scratch"]}
    table = sound_markdown({"sound_recordings": part, "sound_sources": {**part, "direct": scores(0.6, 75), "per_class": {}}})
    assert "| sound → image (direct) | 80.0 % (64 clips) | 60.0 % (75 clips) |" in table
    assert "| cascade baseline: CLAP's nearest caption → text → image | 50.0 % (64 clips) |" in table
    assert f"| chance | {100 / len(SOUND_CLASSES):.1f} % |" in table
    assert "| a dog barking | 75 % (4) | – |" in table
    assert sound_markdown({}) == ""


def test_a_stage_run_by_its_own_command_gets_its_own_record_s_time_in_the_results(tmp_path):
    from world.rebuild import results_markdown

    world, runs = tmp_path / "w", tmp_path / "runs"
    (runs / "sound_vae").mkdir(parents=True)
    (runs / "sound_vae" / "metrics.json").write_text(json.dumps({"steps": 800, "seconds": 900.0, "reconstruction_checker": {"all": 1.0}}))
    world.mkdir()
    (world / "world.json").write_text("{}")
    table = results_markdown(runs, {"stages": {"clap": 600.0}}, "python -m world.rebuild", world, tmp_path / "models")
    row = next(line for line in table.splitlines() if line.startswith("| sound_vae |"))
    assert "| 15.0 |" in row and "its own command" in row and "800 steps" in row
    assert "| **total** | **25.0** |" in table
