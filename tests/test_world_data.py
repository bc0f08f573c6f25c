"""The world's data: its scenes and captions, the model-free checker that reads a picture, the training and held-out
voices, and the layout and held-out split of a built world (world.scenes, world.checker, world.build)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from world.build import TEST_VOICES, TRAIN_VOICES, build_world
from world.checker import accuracy, check_image
from world.scenes import COLOURS, POSITIONS, SHAPES, all_scenes, render


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
