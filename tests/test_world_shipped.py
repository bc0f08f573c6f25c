"""The shipped models in models/world: their size and format, the pictures they draw for held-out voices and for the
shipped examples (examples/world), and the shipped scorer.

These tests load the weights shipped in models/world (skipped, with the reason, when they are absent) and check that
held-out voices speaking captions give pictures whose colour and shape the model-free checker confirms.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from world.build import TEST_VOICES, espeak, trim_silence
from world.checker import check_image
from world.scenes import SOUND_CLASSES

MODELS = Path(__file__).resolve().parents[1] / "models" / "world"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
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
    assert sum(f.stat().st_size for f in files) < 50e6  # 45.6 MB with three experts in the ears


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
def test_every_shipped_sound_example_draws_its_class_for_3_of_4_seeds():
    """The real recordings of examples/world/sounds (each from a source package no stage trained on): the shipped models
    hear the everyday sounds, and the scorer compares over their captions too."""
    from generate.pipeline import AudioToImagePipeline
    from world.checker import check_sound

    pipe = AudioToImagePipeline.from_pretrained(MODELS / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    vocabulary = (MODELS / "scorer" / "vocabulary.txt").read_text().splitlines()
    assert all(c.caption in vocabulary for c in SOUND_CLASSES)
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
