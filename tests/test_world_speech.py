"""The world's speech (issue 9): the sentence corpus, the many-engine build's split, and CTC pretraining.

Fast (seconds): tiny corpora spoken by espeak-ng (skipped where it is not installed), a tiny backbone.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from world.build import build_speech, engine_first, fit_window
from world.scenes import all_scenes, caption, legacy_caption, world_scenes
from world.sentences import ALPHABET, common_words, normalise, sentences, write_corpus
from world.voices import Voice, available_voices

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
try:
    import wordfreq  # noqa: F401  (optional: more words for the corpus)
    HAVE_WORDFREQ = True
except ImportError:
    HAVE_WORDFREQ = False
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="needs espeak-ng (apt-get install espeak-ng)")


# --- captions and sentences -----------------------------------------------------------------------------------

def test_captions_say_an_before_a_vowel():
    assert caption("circle", "orange", "left") == "an orange circle on the left"
    assert caption("cross", "red", "middle") == "a red cross in the middle"
    assert legacy_caption("an orange circle on the left") == "a orange circle on the left"
    assert len({s["caption"] for s in all_scenes()}) == 72


def test_sentences_are_many_different_and_spellable():
    texts = sentences(3000, np.random.default_rng(0))
    assert len(texts) == len(set(texts)) == 3000
    assert all(set(t) <= set(ALPHABET) and t == normalise(t) and 0 < len(t) <= 60 for t in texts)
    words = {w for t in texts for w in t.split()}
    assert len(words) > (1500 if HAVE_WORDFREQ else 200)  # not a handful of templates
    captions = {normalise(s["caption"]) for s in all_scenes()}
    assert 0 < sum(t in captions for t in texts) < 0.1 * len(texts)  # the captions, but only a small share
    for word in ("orange", "triangle", "cross", "middle", "purple"):  # caption words, also outside captions
        assert any(word in t.split() and t not in captions for t in texts), word
    assert sentences(50, np.random.default_rng(1)) == sentences(50, np.random.default_rng(1))


def test_sentences_exclude_and_word_list():
    rng = np.random.default_rng(0)
    first = sentences(200, rng)
    again = sentences(200, np.random.default_rng(0), exclude=set(first[:100]))
    assert not set(first[:100]) & set(again)
    assert len(common_words(500)) >= (500 if HAVE_WORDFREQ else 200) and all(set(w) <= set(ALPHABET) for w in common_words(500))


# --- the build -------------------------------------------------------------------------------------------------

def fake_voices() -> list[Voice]:
    espeak = [Voice("espeak-ng", f"{a}+{v}", (f"espeak-ng/accent:{a}", f"espeak-ng/variant:{v}"))
              for a in ("en-us", "en-gb", "en-029", "en-gb-x-gbcwmd") for v in ("m1", "f2", "f4", "m5")]
    return espeak + [Voice("flite", "kal", ("speaker:cmu-kal",)), Voice("flite", "rms", ("speaker:cmu-rms",))]


def test_engine_first_does_not_let_espeak_dominate():
    picks = engine_first(fake_voices(), 2000, np.random.default_rng(0))
    share = sum(v.engine == "flite" for v in picks) / len(picks)
    assert 0.45 < share < 0.55  # 2 flite voices against 16 espeak-ng voices, yet half the clips


def test_fit_window_cuts_only_added_silence():
    wave = np.ones(16000 * 4, dtype=np.float32)
    cut = fit_window(wave, {"lead_s": 0.6, "trail_s": 0.6}, 3.04)
    assert len(cut) == int(3.04 * 16000)
    assert len(fit_window(wave, {}, 3.04)) == len(wave)  # no silence was added: speech is never cut


@needs_espeak
def test_build_keeps_held_out_voices_and_engine_out_of_training(tmp_path):
    voices = [v for v in available_voices(["espeak-ng"])
              if v.name in ("en-us+m1", "en-gb+f2", "en-029+f4", "en-gb-x-gbcwmd+m5", "en-029+m1")]
    held_out_engine = "flite" if available_voices(["flite"]) else None  # stands in for piper: fast
    voices += available_voices(["flite"])[:1]
    result = build_speech(tmp_path, clips_per_caption=1, test_clips_per_engine=1, held_out_engine=held_out_engine, voices=voices)
    rows = {part: [json.loads(line) for line in (tmp_path / part / "metadata.jsonl").read_text().splitlines()]
            for part in ("train", "test", "test_engine") if (tmp_path / part / "metadata.jsonl").exists()}
    train_voices = {r["voice"] for r in rows["train"]}
    test_voices = {r["voice"] for r in rows["test"]}
    assert len(rows["train"]) == 72 and len(rows["test"]) == 72 and result["clips"]["train"] == 72
    assert train_voices <= {"espeak-ng/en-us+m1", "espeak-ng/en-gb+f2"}
    assert test_voices <= {"espeak-ng/en-029+f4", "espeak-ng/en-gb-x-gbcwmd+m5"}
    if held_out_engine:
        assert {r["engine"] for r in rows["test_engine"]} == {"flite"} and len(rows["test_engine"]) == 72
        assert "flite" not in {r["engine"] for r in rows["train"] + rows["test"]}
    assert {r["caption"] for r in rows["train"]} == {s["caption"] for s in all_scenes()}
    assert all(r["seconds"] <= 3.04 and (tmp_path / "train" / r["file_name"]).exists() for r in rows["train"])


def test_a_build_speaks_the_unheard_engines_where_installed_and_keeps_no_clips_of_an_earlier_build(tmp_path, monkeypatch, capsys):
    import world.build as build

    stale = tmp_path / "audio" / "test_unheard"  # an earlier build's clips
    stale.mkdir(parents=True)
    (stale / "metadata.jsonl").write_text("{}\n")
    monkeypatch.setattr(build, "build_speech", lambda *args, **kwargs: {"clips": {"train": 0, "test": 0}, "voices": {"train": []}})
    calls, installed = [], []
    monkeypatch.setattr(build, "build_unheard", lambda out, clips, strength, seed: calls.append((str(out), clips, strength, seed)) or 432)
    monkeypatch.setattr(build, "available_voices", lambda engines=None: installed if engines == list(build.UNHEARD_ENGINES) else [])
    monkeypatch.setattr(build, "build_hard", lambda *args, **kwargs: {"train": 6, "test": 3})

    manifest = build.build_world_many(tmp_path, images=False)  # RHVoice and SAM not installed: a line says so
    assert manifest["clips"]["hard_train"] == 6
    assert manifest["clips"]["test_unheard"] == 0 and not stale.exists() and calls == []
    assert "none of rhvoice, sam is installed" in capsys.readouterr().out
    installed.append("a voice")
    manifest = build.build_world_many(tmp_path, images=False, strength=0.5, seed=3)
    assert manifest["clips"]["test_unheard"] == 432 and calls == [(str(tmp_path), build.UNHEARD_CLIPS_PER_ENGINE, 0.5, 3)]
    assert build.build_world_many(tmp_path, images=False, unheard_clips_per_engine=0)["clips"]["test_unheard"] == 0 and len(calls) == 1


def caption_forms(row: dict) -> set[str]:
    """The ways world.build.carrier_text says a row's caption: whole, or in two breaths with or without its article."""
    where = "in the middle" if row["position"] == "middle" else f"on the {row['position']}"
    article = row["caption"].split(" ", 1)[0] + " "
    return {row["caption"], *(f"{a}{row['colour']} {row['shape']}, {where}" for a in ("", article))}


def wrapped_in_fillers(row: dict) -> bool:
    """Whether the row's words are a form of its caption with only world.build's filler words around it."""
    from world.build import filler_words

    fillers = set(filler_words())
    for form in caption_forms(row):
        before, found, after = row["said"].partition(form)
        if found and before.split() and set(before.split() + after.split()) <= fillers:
            return True
    return False


def said_with(row: dict, carriers: tuple[str, ...]) -> bool:
    """Whether the row's words are one of these carriers around a form of its caption."""
    for carrier in carriers:
        match = re.fullmatch(re.escape(carrier).replace(re.escape("{}"), "(.+)"), row["said"])
        if match and match.group(1) in caption_forms(row):
            return True
    return False


def test_requests_wrap_the_caption_in_carriers_or_filler_words_that_no_caption_uses():
    from world.build import TRAIN_CARRIERS, carrier_text, filler_words

    fillers = filler_words()
    caption_words = {w for s in world_scenes() for w in s["caption"].replace(",", " ").split()}
    assert len(fillers) > 100 and not caption_words & set(fillers)  # "dog", "left", "red" never stand around a caption
    rng = np.random.default_rng(0)
    rows = [{**s, "said": carrier_text(s, rng, TRAIN_CARRIERS, fillers)} for s in all_scenes() for _ in range(4)]
    kinds = [("carrier" if said_with(r, TRAIN_CARRIERS) else "fillers" if wrapped_in_fillers(r) else
              "two breaths" if r["said"] in caption_forms(r) else "other") for r in rows]
    assert "other" not in kinds and min(kinds.count(k) for k in ("carrier", "fillers", "two breaths")) > 20
    plain = [{**r, "said": carrier_text(r, rng)} for r in rows]  # without fillers: the carriers alone
    assert all(said_with(r, TRAIN_CARRIERS) or r["said"] in caption_forms(r) for r in plain)


@needs_espeak
def test_the_hard_clips_keep_the_bare_caption_and_go_to_one_held_out_folder_per_way(tmp_path):
    from world.build import HARD_FOLDERS, HELD_OUT_CARRIERS, TEST_HARDNESS, TRAIN_CARRIERS, TRAIN_HARDNESS, build_hard

    voices = [v for v in available_voices(["espeak-ng"]) if v.name in ("en-us+m1", "en-029+f4")]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metadata.jsonl").write_text(json.dumps({"file_name": "000.wav", "caption": "a red circle on the left"}) + "\n")
    scenes = all_scenes()[::12]  # six captions, each said once per way by a held-out voice
    counts = build_hard(tmp_path, clips_per_caption=3, test_clips_per_caption=1, held_out_engine=None, voices=voices, scenes=scenes)
    train = [json.loads(line) for line in (tmp_path / "train" / "metadata.jsonl").read_text().splitlines()]
    assert train[0]["file_name"] == "000.wav" and counts["train"] == len(train) - 1 == 18  # the speech build's rows kept
    hard = train[1:]
    assert {r["hard"]["condition"] for r in hard} == {"carrier", "music_room", "pitch"}
    assert all(r["caption"] in {s["caption"] for s in all_scenes()} for r in hard)  # the target is the bare caption
    carried = [r for r in hard if r["hard"]["condition"] == "carrier"]
    assert all(r["said"] != r["caption"] for r in carried) and all(r["said"] == r["caption"] for r in hard if r not in carried)
    low, high = TRAIN_HARDNESS["semitones"]
    assert all(low <= abs(r["hard"]["semitones"]) <= high for r in hard if r["hard"]["condition"] == "pitch")
    for condition, folder in HARD_FOLDERS.items():
        rows = [json.loads(line) for line in (tmp_path / folder / "metadata.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and {r["hard"]["condition"] for r in rows} == {condition}
        assert {r["voice"] for r in rows} <= {"espeak-ng/en-029+f4"}  # held-out voices only
        if condition == "pitch":
            low, high = TEST_HARDNESS["semitones"]
            assert all(low <= abs(r["hard"]["semitones"]) <= high for r in rows)
        if condition == "carrier":  # the held-out requests are phrased in words no training clip uses around a caption
            assert all(r["said"] != r["caption"] for r in rows)
            assert all(said_with(r, HELD_OUT_CARRIERS) or r["said"] in caption_forms(r) for r in rows)
            assert not any(said_with(r, TRAIN_CARRIERS) or wrapped_in_fillers(r) for r in rows)
    assert all(said_with(r, TRAIN_CARRIERS) or wrapped_in_fillers(r) or r["said"] in caption_forms(r) for r in carried)
    assert not any(said_with(r, HELD_OUT_CARRIERS) for r in carried)
    build_hard(tmp_path, clips_per_caption=1, test_clips_per_caption=1, held_out_engine=None, voices=voices, scenes=scenes)  # again: replaced
    assert len((tmp_path / "train" / "metadata.jsonl").read_text().splitlines()) == 1 + 6


def test_music_is_a_bounded_tone_signal_that_changes_with_the_seed():
    from world.microphone import music

    a, b = music(32_000, np.random.default_rng(0)), music(32_000, np.random.default_rng(1))
    assert a.shape == (32_000,) and np.abs(a).max() <= 1.0 and np.all(np.isfinite(a)) and a.std() > 0.05
    assert not np.allclose(a, b)
    spectrum = np.abs(np.fft.rfft(a))
    assert spectrum.max() > 20 * np.median(spectrum)  # tones, not noise


# --- pretraining -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    if not HAVE_ESPEAK:
        pytest.skip("needs espeak-ng")
    out = tmp_path_factory.mktemp("speech")
    voices = [v for v in available_voices(["espeak-ng"]) if v.name in ("en-us+m1", "en-gb+f2", "en-029+f4", "en-gb-x-gbcwmd+m5")]
    manifest = write_corpus(out, clips=8, test_clips=4, held_out_engine=None, voices=voices)
    assert manifest["clips"] == {"train": 8, "test": 4, "test_engine": 0}
    texts = [json.loads(line)["text"] for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(set(texts)) == 8
    return out


def test_pretraining_saves_a_backbone_that_align_train_accepts(tiny_corpus, tmp_path):
    from hearing.encoder import AudioPromptEncoder
    from align.train import load_encoder_to_train
    from world.pretrain_speech import main as pretrain

    out = tmp_path / "speech"
    metrics = pretrain(["--speech", str(tiny_corpus), "--out", str(out), "--steps", "2", "--batch-size", "4",
                        "--hidden", "16", "--layers", "1", "--threads", "1"])
    assert metrics["steps"] == 2 and np.isfinite(metrics["final_loss"] if metrics["final_loss"] is not None else 0.0)
    assert "test" in metrics["cer"]
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (out / "final" / name).exists()
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["model_type"] == "wav2vec2-bert" and not config["add_adapter"]
    encoder = load_encoder_to_train(str(out / "final"), text_hidden_size=8, num_audio_tokens=6)
    assert isinstance(encoder, AudioPromptEncoder)
    from safetensors.torch import load_file
    saved = load_file(out / "final" / "model.safetensors")
    loaded = encoder.audio_model.state_dict()
    key = next(k for k in saved if "encoder.layers.0.ffn1.intermediate_dense.weight" in k)
    assert torch.equal(loaded[key], saved[key])  # the pretrained weights, not a fresh initialisation


def test_pretraining_resumes_from_its_checkpoint(tiny_corpus, tmp_path):
    from world.pretrain_speech import main as pretrain

    out = tmp_path / "speech"
    args = ["--speech", str(tiny_corpus), "--out", str(out), "--batch-size", "4", "--hidden", "16", "--layers", "1", "--threads", "1"]
    pretrain(args + ["--steps", "2"])
    first = torch.load(out / "checkpoint.pt", weights_only=False)
    assert first["step"] == 2 and (out / "features.pt").exists()
    metrics = pretrain(args + ["--steps", "3"])
    assert metrics["steps"] == 3
    assert "resumed at step 2" in (out / "log.txt").read_text()
    assert "features from" in (out / "log.txt").read_text()  # features were not computed again


def test_ctc_helpers():
    from world.pretrain_speech import character_error_rate, decode_ids, encode_text, spec_augment

    ids = encode_text("a red cross")
    spaced = [x for i in ids for x in (0, i, i)]  # each character twice, a blank before it: repeats merge, blanks split
    assert decode_ids(spaced) == "a red cross"
    assert decode_ids(ids) == "a red cros"  # "ss" with no blank between is one s, as CTC means it
    assert character_error_rate(["a red cross"], ["a red cross"]) == 0.0
    assert character_error_rate(["a rod cross"], ["a red cross"]) == pytest.approx(1 / 11)
    features = torch.ones(100, 160)
    spec_augment(features, np.random.default_rng(0))
    assert 0 < (features == 0).float().mean() < 0.5
