"""Build the paired world: captioned pictures, and each caption spoken by many voices of many speech engines.

    python -m world.build --out data/world                  # full size: many engines and voices (see world.voices)
    python -m world.build --out /tmp/w --images-per-caption 2 --clips-per-caption 2 --test-clips-per-engine 1
    python -m world.build --out data/world --espeak-only    # the first build's ten espeak-ng voices (legacy)
    python -m world.build --out data/world --unheard        # only (re)write test_unheard/: engines no stage uses (RHVoice, SAM)

Layout written (both halves are the folders `datasets`' imagefolder / audiofolder and `align.data` read):

    <out>/images/metadata.jsonl          file_name, caption, shape, colour, position; <out>/images/*.png
    <out>/audio/train/metadata.jsonl     file_name, caption, engine, voice, prosody, microphone; wav files (16 kHz)
    <out>/audio/test/...                 held-out voices of the trained engines (never heard in train/)
    <out>/audio/test_engine/...          the held-out engine (piper by default): never heard in training at all
    <out>/audio/test_unheard/...         engines outside the world's list (RHVoice, SAM), used by no stage, where installed
    <out>/audio/test_carrier/, test_music_room/, test_pitch/   held-out voices saying the captions the hard ways (build_hard):
                                         inside a longer request, over music in a reverberant room, pitched 3-7 semitones;
                                         train/ holds such clips of the training voices too (hard_*.wav)
    <out>/world.json                     what was built, with which voices and seed

Voices come from `world.voices.split_voices`. Every training clip picks an engine first (uniformly) and then one
of its voices, so espeak-ng's ~500 variants do not drown the dozen other voices; its prosody (speed, pitch, ...)
is drawn by the engine, the synthesizer's silence is trimmed, and `world.microphone.microphone` then adds a
room, noise, band limits, level and codec, as a recording would have. The held-out sets are balanced per
engine (`--test-clips-per-engine` clips of each caption by each held-out engine), so a figure per engine means
the same thing for each. `align.train` trains on train/ and evaluates on test/; test_engine/ is for the
evaluation of the shipped model (world.train_audio.evaluate_folders).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE, split_windows, window_samples_for_tokens
from world.espeak import espeak as run_espeak
from world.microphone import add_noise, microphone_with_info, music, pitch_shift
from world.microphone import room as mic_room
from world.microphone import trim_silence as _trim_silence
from world.scenes import all_scenes, legacy_caption, render, world_scenes
from world.settings import NUM_AUDIO_TOKENS
from world.voices import ENGINE_PACKAGES, UNHEARD_ENGINES, Voice, available_voices, split_voices

TRAIN_VOICES = (
    "en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f1", "en-gb-x-rp+m2",
    "en-gb-x-rp+f3", "en-gb-scotland+m4", "en-gb-x-gbclan+f5", "en-us+m6", "en-gb-scotland+m7",
)
TEST_VOICES = ("en-029+f4", "en-gb-x-gbcwmd+m5")  # accents and variants that no training voice uses
SPEED_RANGE = (120, 200)  # words per minute
PITCH_RANGE = (25, 75)  # espeak-ng's 0-99 scale
SNR_RANGE_DB = (10.0, 35.0)
REVERB_PROBABILITY = 0.5
RT60_RANGE_S = (0.1, 0.5)


def voice_parts(voice: str) -> tuple[str, str]:
    accent, _, variant = voice.partition("+")
    return accent, variant


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """`text` spoken by espeak-ng (the first build's voices), as mono float32 at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("building the world needs espeak-ng: apt-get install espeak-ng")
    return run_espeak(text, voice, speed, pitch)


def trim_silence(wave: np.ndarray, threshold: float = 0.01, margin_s: float = 0.05) -> np.ndarray:
    """Cut a synthesizer's leading and trailing silence (see world.microphone.trim_silence)."""
    return _trim_silence(wave, threshold, margin_s)


def room(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Reverberation from a synthetic room (exponentially decaying noise), mixed with the dry sound."""
    rt60 = rng.uniform(*RT60_RANGE_S)
    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    response = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    response[0] = 1.0
    response /= np.sqrt((response**2).sum())
    size = len(wave) + length - 1
    wet = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(response, size), size)[: len(wave)]
    mix = rng.uniform(0.3, 0.8)
    return (1 - mix) * wave + mix * wet


def degrade(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Room reverberation (half the clips), background noise at a random SNR, a random level."""
    info = {"reverb": bool(rng.random() < REVERB_PROBABILITY)}
    if info["reverb"]:
        wave = room(wave, rng)
    snr = rng.uniform(*SNR_RANGE_DB)
    noise = rng.standard_normal(len(wave))
    if rng.random() < 0.5:  # brown-ish noise (rumble) for half the clips, white hiss for the rest
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    power = np.mean(wave**2) + 1e-12
    noise *= np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
    wave = wave + noise
    level = rng.uniform(0.2, 0.9)
    info["snr_db"] = round(float(snr), 1)
    return (wave / (np.abs(wave).max() + 1e-9) * level).astype(np.float32), info


def write_images(out: Path, images_per_caption: int, rng: np.random.Generator) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scene in enumerate(all_scenes()):
        for k in range(images_per_caption):
            name = f"{i:03d}_{k:04d}.png"
            render(scene["shape"], scene["colour"], scene["position"], rng).save(out / name)
            rows.append({"file_name": name, **scene})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def write_speech(out: Path, voices: tuple[str, ...], clips_per_voice: int, rng: np.random.Generator) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scene in enumerate(all_scenes()):
        for v, voice in enumerate(voices):
            for k in range(clips_per_voice):
                speed, pitch = int(rng.integers(*SPEED_RANGE)), int(rng.integers(*PITCH_RANGE))
                wave, info = degrade(trim_silence(espeak(scene["caption"], voice, speed, pitch)), rng)
                name = f"{i:03d}_{v:02d}_{k:02d}.wav"
                sf.write(out / name, wave, SAMPLE_RATE)
                rows.append({"file_name": name, **scene, "voice": voice, "speed": speed, "pitch": pitch, **info,
                             "seconds": round(len(wave) / SAMPLE_RATE, 2)})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def build_world(
    out: str | Path,
    images_per_caption: int = 150,
    clips_per_voice: int = 3,
    test_clips_per_voice: int = 2,
    train_voices: tuple[str, ...] = TRAIN_VOICES,
    test_voices: tuple[str, ...] = TEST_VOICES,
    seed: int = 0,
) -> dict:
    """Write the world to `out` (replacing what was there) and return its manifest."""
    overlap = set(train_voices) & set(test_voices)
    if overlap:
        raise ValueError(f"voices {sorted(overlap)} are both trained on and held out")
    out = Path(out)
    for part in ("images", "audio"):
        shutil.rmtree(out / part, ignore_errors=True)
    start = time.perf_counter()
    image_rng, train_rng, test_rng = (np.random.default_rng([seed, k]) for k in range(3))
    manifest = {
        "seed": seed,
        "captions": [s["caption"] for s in all_scenes()],
        "train_voices": list(train_voices),
        "test_voices": list(test_voices),
        "images": write_images(out / "images", images_per_caption, image_rng),
        "train_clips": write_speech(out / "audio" / "train", tuple(train_voices), clips_per_voice, train_rng),
        "test_clips": write_speech(out / "audio" / "test", tuple(test_voices), test_clips_per_voice, test_rng),
    }
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    (out / "world.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# --- many engines and voices (issue 9) ------------------------------------------------------------------------

MAX_CAPTION_SECONDS = 3.04  # the audio encoder's window (38 tokens): silence beyond it is cut, speech never
BABBLE_POOL = 24  # clean clips kept to mix in as background babble


def engine_first(voices: list[Voice], count: int, rng: np.random.Generator) -> list[Voice]:
    """`count` voices: each an engine drawn uniformly, then one of its voices uniformly."""
    by_engine: dict[str, list[Voice]] = {}
    for voice in sorted(voices, key=lambda v: v.key):
        by_engine.setdefault(voice.engine, []).append(voice)
    if not by_engine:
        raise ValueError("no voices to speak with: install espeak-ng at least (see world.voices)")
    engines = sorted(by_engine)
    picks = []
    for _ in range(count):
        pool = by_engine[engines[int(rng.integers(len(engines)))]]
        picks.append(pool[int(rng.integers(len(pool)))])
    return picks


def fit_window(wave: np.ndarray, info: dict, max_seconds: float | None) -> np.ndarray:
    """Cut the microphone's added silence so the clip lasts at most `max_seconds` (speech is kept whole)."""
    if not max_seconds:
        return wave
    excess = len(wave) - int(max_seconds * SAMPLE_RATE)
    if excess <= 0:
        return wave
    lead = int(info.get("lead_s", 0.0) * SAMPLE_RATE)
    trail = int(info.get("trail_s", 0.0) * SAMPLE_RATE)
    from_lead = min(lead, int(round(excess * lead / max(lead + trail, 1))))
    from_trail = min(trail, excess - from_lead)
    return wave[from_lead : len(wave) - from_trail if from_trail else len(wave)]


def speak_clips(texts: list[str], voices: list[Voice], out: str | Path, rng: np.random.Generator, *,
                strength: float = 1.0, max_seconds: float | None = MAX_CAPTION_SECONDS, extra: list[dict] | None = None,
                prefix: str = "", audio_format: str = "wav", picks: list[Voice] | None = None) -> list[dict]:
    """Speak each text with a voice picked engine-first from `voices` (or given in `picks`), trim it, pass it
    through the microphone, and write it to `out` with a metadata.jsonl row (`extra[i]` merged in). Clips an
    engine cannot say are skipped (counted in the returned rows' absence). Returns the rows written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picks = picks if picks is not None else engine_first(voices, len(texts), rng)
    extra = extra if extra is not None else [{} for _ in texts]
    by_voice: dict[str, list[int]] = {}
    for i, voice in enumerate(picks):
        by_voice.setdefault(voice.key, []).append(i)
    clean: dict[int, tuple[np.ndarray, dict]] = {}
    for key in sorted(by_voice):
        idx = by_voice[key]
        voice = picks[idx[0]]
        prosodies = [voice.draw_prosody(rng) for _ in idx]
        try:
            waves = voice.synthesize_many([texts[i] for i in idx], prosodies)
        except RuntimeError:  # one text the engine cannot say: retry one by one, skipping the failures
            waves = []
            for i, prosody in zip(idx, prosodies):
                try:
                    waves.append(voice.synthesize(texts[i], **prosody))
                except RuntimeError:
                    waves.append(None)
        for i, prosody, wave in zip(idx, prosodies, waves):
            if wave is not None:
                clean[i] = (trim_silence(wave), prosody)
    rows, babble = [], []
    for i in sorted(clean):
        wave, prosody = clean[i]
        try:
            noisy, info = microphone_with_info(wave, rng, strength, babble[-BABBLE_POOL:] or None)
        except Exception as error:  # one bad draw (e.g. a codec setting libsndfile refuses) must not lose the whole build
            noisy, info = microphone_with_info(wave, rng, strength, None)
            info["retried"] = f"{type(error).__name__}: {error}"[:200]
        noisy = fit_window(noisy, info, max_seconds)
        babble.append(wave)
        name = f"{prefix}{i:06d}.{audio_format}"
        sf.write(out / name, noisy, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"file_name": name, **extra[i], "engine": picks[i].engine, "voice": picks[i].key,
                     "prosody": prosody, "microphone": info, "seconds": round(len(noisy) / SAMPLE_RATE, 2)})
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def caption_jobs(repeats: int, legacy_articles: bool = False) -> tuple[list[str], list[dict]]:
    """Every caption `repeats` times: the texts to speak and their metadata (the caption as the targets spell it)."""
    texts, extra = [], []
    for scene in all_scenes():
        text = legacy_caption(scene["caption"]) if legacy_articles else scene["caption"]
        for _ in range(repeats):
            texts.append(text)
            extra.append({**scene, "caption": text})
    return texts, extra


def build_speech(out: str | Path, clips_per_caption: int = 40, test_clips_per_engine: int = 2,
                 held_out_engine: str | None = "auto", strength: float = 1.0, seed: int = 0,
                 legacy_articles: bool = False, voices: list[Voice] | None = None) -> dict:
    """The spoken captions: train/ (engine-first over the training voices), test/ (each held-out voice's engine,
    balanced) and test_engine/ (the held-out engine). Returns what was written."""
    out = Path(out)
    for part in ("train", "test", "test_engine"):
        shutil.rmtree(out / part, ignore_errors=True)
    split = split_voices(voices if voices is not None else available_voices(), held_out_engine)
    if not split["train"]:
        raise RuntimeError("no training voices: install espeak-ng (and more engines: see world.voices)")
    train_rng, test_rng, engine_rng = (np.random.default_rng([seed, 10 + k]) for k in range(3))
    texts, extra = caption_jobs(clips_per_caption, legacy_articles)
    counts = {"train": len(speak_clips(texts, split["train"], out / "train", train_rng, strength=strength, extra=extra))}
    for part, pool, rng in (("test", split["test_voices"], test_rng), ("test_engine", split["test_engine"], engine_rng)):
        counts[part] = held_out_part(out / part, pool, rng, test_clips_per_engine, strength, legacy_articles)
    return {"clips": counts, "voices": {k: [v.key for v in vs] for k, vs in split.items() if k != "unused"},
            "held_out_engine": split["test_engine"][0].engine if split["test_engine"] else None}


def held_out_part(out: Path, pool: list[Voice], rng: np.random.Generator, clips_per_engine: int, strength: float = 1.0,
                  legacy_articles: bool = False) -> int:
    """A held-out folder balanced per engine: every caption `clips_per_engine` times by each engine of `pool`."""
    if not pool:
        return 0
    engines = sorted({v.engine for v in pool})
    texts, extra = caption_jobs(clips_per_engine * len(engines), legacy_articles)
    picks = [engine_first([v for v in pool if v.engine == engines[k % len(engines)]], 1, rng)[0] for k in range(len(texts))]
    return len(speak_clips(texts, pool, out, rng, strength=strength, extra=extra, picks=picks))


UNHEARD_CLIPS_PER_ENGINE = 3  # each caption 3 times per engine no stage uses: 432 clips of RHVoice and SAM


def build_unheard(out: str | Path, clips_per_engine: int = UNHEARD_CLIPS_PER_ENGINE, strength: float = 1.0, seed: int = 0) -> int:
    """<out>/audio/test_unheard: the captions spoken by the UNHEARD_ENGINES (sources issue 9 did not name, used by
    no stage), through the same microphone as the other held-out sets; an existing world is left as it is."""
    pool = available_voices(list(UNHEARD_ENGINES))
    if not pool:
        raise RuntimeError(f"none of {', '.join(UNHEARD_ENGINES)} is installed: " + "; ".join(ENGINE_PACKAGES[e] for e in UNHEARD_ENGINES))
    folder = Path(out) / "audio" / "test_unheard"
    shutil.rmtree(folder, ignore_errors=True)
    return held_out_part(folder, pool, np.random.default_rng([seed, 20]), clips_per_engine, strength)


def build_world_many(out: str | Path, images_per_caption: int = 150, clips_per_caption: int = 40,
                     test_clips_per_engine: int = 2, held_out_engine: str | None = "auto", strength: float = 1.0,
                     seed: int = 0, legacy_articles: bool = False, images: bool = True,
                     unheard_clips_per_engine: int = UNHEARD_CLIPS_PER_ENGINE, hard_clips_per_caption: int = 72) -> dict:
    """Write the world (pictures + speech of many engines) to `out` and return its manifest. With the engines no stage
    uses installed, their clips go to test_unheard/ as well, so every build measures them; without, a line says so and
    no clips of an earlier build are left there."""
    out = Path(out)
    start = time.perf_counter()
    manifest = {"seed": seed, "captions": [s["caption"] for s in all_scenes()]}
    if images:
        shutil.rmtree(out / "images", ignore_errors=True)
        manifest["images"] = write_images(out / "images", images_per_caption, np.random.default_rng([seed, 0]))
    manifest.update(build_speech(out / "audio", clips_per_caption, test_clips_per_engine, held_out_engine, strength, seed,
                                 legacy_articles))
    if unheard_clips_per_engine and available_voices(list(UNHEARD_ENGINES)):
        manifest["clips"]["test_unheard"] = build_unheard(out, unheard_clips_per_engine, strength, seed)
    else:
        shutil.rmtree(out / "audio" / "test_unheard", ignore_errors=True)
        manifest["clips"]["test_unheard"] = 0
        if unheard_clips_per_engine:
            print(f"no clips of engines no stage uses (test_unheard/): none of {', '.join(UNHEARD_ENGINES)} is installed ("
                  + "; ".join(ENGINE_PACKAGES[e] for e in UNHEARD_ENGINES) + ")", flush=True)
    if hard_clips_per_caption:
        hard = build_hard(out / "audio", hard_clips_per_caption, seed=seed, held_out_engine=held_out_engine)
        manifest["clips"]["hard_train"], manifest["clips"]["hard_test"] = hard["train"], hard["test"]
    manifest["train_clips"], manifest["test_clips"] = manifest["clips"]["train"], manifest["clips"]["test"]
    for part, key in (("test", "test_voices"), ("test_engine", "test_engine_voices")):  # the voices that speak there
        rows = out / "audio" / part / "metadata.jsonl"
        manifest[key] = sorted({json.loads(line)["voice"] for line in rows.read_text().splitlines()}) if rows.exists() else []
    manifest["train_voices"] = manifest["voices"]["train"]
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    (out / "world.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# --- the captions said the hard ways ------------------------------------------------------------------------------

# Words people put around what they ask for; each keeps the bare caption's target (the picture is the same). The
# training voices say TRAIN_CARRIERS; the held-out voices say HELD_OUT_CARRIERS, which no stage hears, so the held-out
# requests measure phrasings the ears never met as well as voices they never met.
TRAIN_CARRIERS = ("please draw {}", "um, {}", "uh, {}", "draw {}", "show me {}", "{} please", "{}, please", "okay, {}",
                  "can you draw {}", "could you draw {}", "now {}", "and now {}", "i would like {}", "i'd like to see {}",
                  "{}, thanks", "{}, thank you", "paint {}", "make {}", "give me {}", "draw me {}", "a picture of {}",
                  "so, {}", "hmm, {}", "well, {}", "next, {}", "i want {}", "let me see {}", "can i have {}", "show {}",
                  "please, {}", "right, {}", "let's draw {}")
HELD_OUT_CARRIERS = ("could you please show {}", "hey, {}", "{} for me", "i want to see {}", "how about {}",
                     "er, {}, thanks", "sketch {}", "yes, {}")
HARD_CONDITIONS = ("carrier", "music_room", "pitch")
HARD_FOLDERS = {"carrier": "test_carrier", "music_room": "test_music_room", "pitch": "test_pitch"}  # held-out voices, per condition
# How hard: the held-out sets keep the ranges they were first measured with; training reaches past them on both sides,
# so a voice a little further down or a room a little wetter than any held-out one is still inside what was heard
TEST_HARDNESS = {"rt60_s": (0.6, 1.8), "wet": (0.4, 0.85), "music_snr_db": (0.0, 15.0), "semitones": (3.0, 7.0)}
TRAIN_HARDNESS = {"rt60_s": (0.3, 2.2), "wet": (0.3, 0.9), "music_snr_db": (-3.0, 18.0), "semitones": (2.0, 9.0)}


def filler_words() -> list[str]:
    """Everyday words that are in no caption of the world (world.sentences' vocabulary, less every word a shape's or a
    sound's caption uses): what a person may say around a request."""
    from world.sentences import ADJECTIVES, ADVERBS, DETERMINERS, NOUNS, PREPOSITIONS, SUBJECTS, TRANSITIVE

    taken = {word for scene in world_scenes() for word in scene["caption"].replace(",", " ").split()} | {"a", "an", "the"}
    words = dict.fromkeys(SUBJECTS + DETERMINERS + ADJECTIVES + NOUNS + TRANSITIVE + PREPOSITIONS + ADVERBS)
    return [w for w in words if w not in taken]


def carrier_text(scene: dict, rng: np.random.Generator, carriers: tuple[str, ...] = TRAIN_CARRIERS,
                 fillers: list[str] | None = None) -> str:
    """The caption inside a longer request ("please draw a blue square in the middle"), or said in two breaths
    ("red circle, on the left"), itself sometimes inside a request. With `fillers` (training), half the requests
    wrap the caption in 1-4 random words before it and 0-2 after it instead of a carrier: the ears learn to hear the
    caption whatever is said around it, not a list of phrasings."""
    caption = scene["caption"]
    if rng.random() < 0.25:
        where = "in the middle" if scene["position"] == "middle" else f"on the {scene['position']}"
        article = "" if rng.random() < 0.5 else scene["caption"].split(" ", 1)[0] + " "
        caption = f"{article}{scene['colour']} {scene['shape']}, {where}"
        if rng.random() >= 0.3:
            return caption
    if fillers and rng.random() < 0.5:
        before, after = int(rng.integers(1, 5)), int(rng.integers(0, 3))
        words = [fillers[int(i)] for i in rng.integers(len(fillers), size=before + after)]
        return " ".join(words[:before] + [caption] + words[before:])
    return carriers[int(rng.integers(len(carriers)))].format(caption)


def harden(wave: np.ndarray, condition: str, rng: np.random.Generator, hardness: dict = TEST_HARDNESS) -> tuple[np.ndarray, dict]:
    """A recorded clip made harder: music playing in a reverberant room, or the voice pitched up or down (a carrier
    phrase is hard already and is left as it is); `hardness` gives the ranges."""
    info: dict = {"condition": condition}
    if condition == "music_room":
        info["rt60_s"], info["wet"] = round(float(rng.uniform(*hardness["rt60_s"])), 2), round(float(rng.uniform(*hardness["wet"])), 2)
        wave = mic_room(wave, info["rt60_s"], info["wet"], rng)
        info["music_snr_db"] = round(float(rng.uniform(*hardness["music_snr_db"])), 1)
        wave = add_noise(wave, music(len(wave), rng), info["music_snr_db"])
    elif condition == "pitch":
        info["semitones"] = round(float(rng.choice([-1, 1]) * rng.uniform(*hardness["semitones"])), 2)
        wave = pitch_shift(wave, info["semitones"])
    peak = np.abs(wave).max() + 1e-9
    return (wave / peak * min(peak, 0.99) if peak > 0.99 else wave).astype(np.float32), info


def build_hard(audio: str | Path, clips_per_caption: int = 72, test_clips_per_caption: int = 1, seed: int = 0,
               held_out_engine: str | None = "auto", voices: list[Voice] | None = None, scenes: list[dict] | None = None) -> dict:
    """The captions said the hard ways (HARD_CONDITIONS, in turn) by the training voices into <audio>/train (added,
    as hard_*.wav, replacing an earlier build's), and by the held-out voices into one folder per condition
    (HARD_FOLDERS). Every clip's caption is the bare caption: what to draw does not change. The training voices' requests
    use TRAIN_CARRIERS or filler words and their conditions TRAIN_HARDNESS; the held-out voices' HELD_OUT_CARRIERS and
    TEST_HARDNESS. A training clip longer than the window is written as the pipeline hears it (sped up to fit, or cut)."""
    audio = Path(audio)
    split = split_voices(voices if voices is not None else available_voices(), held_out_engine)
    window = window_samples_for_tokens(NUM_AUDIO_TOKENS)
    counts = {}
    for part, pool, repeats, rng in (("train", split["train"], clips_per_caption, np.random.default_rng([seed, 40])),
                                     ("test", split["test_voices"], test_clips_per_caption, np.random.default_rng([seed, 41]))):
        said = [s for s in (scenes or all_scenes()) for _ in range(repeats * (1 if part == "train" else len(HARD_CONDITIONS)))]
        conditions = [HARD_CONDITIONS[k % len(HARD_CONDITIONS)] for k in range(len(said))]
        carriers, hardness = (TRAIN_CARRIERS, TRAIN_HARDNESS) if part == "train" else (HELD_OUT_CARRIERS, TEST_HARDNESS)
        fillers = filler_words() if part == "train" else None
        texts = [carrier_text(s, rng, carriers, fillers) if c == "carrier" else s["caption"] for s, c in zip(said, conditions)]
        staging = audio / f"hard_{part}"
        shutil.rmtree(staging, ignore_errors=True)
        rows = speak_clips(texts, pool, staging, rng, extra=[{**s, "said": x, "hard": {"condition": c}} for s, x, c in zip(said, texts, conditions)],
                           max_seconds=None)
        for folder in HARD_FOLDERS.values() if part == "test" else ():
            shutil.rmtree(audio / folder, ignore_errors=True)
        if part == "train":
            for old in (audio / "train").glob("hard_*.wav"):
                old.unlink()
        written: dict[str, list[dict]] = {}
        for row in rows:
            condition = row["hard"]["condition"]
            wave, info = harden(sf.read(staging / row["file_name"], dtype="float32")[0], condition, rng, hardness)
            if part == "train" and len(wave) > window:  # what the pipeline hears of it: a long request sped up to fit
                wave = split_windows(wave, window, "first")[0][1]
            folder = audio / ("train" if part == "train" else HARD_FOLDERS[condition])
            folder.mkdir(parents=True, exist_ok=True)
            name = f"hard_{row['file_name']}" if part == "train" else row["file_name"]
            sf.write(folder / name, wave, SAMPLE_RATE, subtype="PCM_16")
            written.setdefault(str(folder), []).append({**row, "file_name": name, "hard": info})
        shutil.rmtree(staging, ignore_errors=True)
        for folder, new_rows in written.items():
            metadata = Path(folder) / "metadata.jsonl"
            kept = [line for line in (metadata.read_text().splitlines() if metadata.exists() else [])
                    if line.strip() and not json.loads(line)["file_name"].startswith("hard_")] if part == "train" else []
            metadata.write_text("".join(line + "\n" for line in kept) + "".join(json.dumps(r) + "\n" for r in new_rows))
        counts[part] = len(rows)
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/world", help="folder to write (its images/ and audio/ are replaced)")
    parser.add_argument("--images-per-caption", type=int, default=150)
    parser.add_argument("--clips-per-caption", type=int, default=40, help="training clips per caption (voices drawn engine-first)")
    parser.add_argument("--test-clips-per-engine", type=int, default=2, help="held-out clips per caption and held-out engine")
    parser.add_argument("--held-out-engine", default="auto", help="engine never trained on ('auto': piper if installed; 'none')")
    parser.add_argument("--strength", type=float, default=1.0, help="microphone augmentation strength (0: clean)")
    parser.add_argument("--legacy-articles", action="store_true", help='speak and caption "a orange" (the pre-issue-9 text encoder\'s spelling)')
    parser.add_argument("--no-images", action="store_true", help="write only the speech")
    parser.add_argument("--espeak-only", action="store_true", help="the first build: ten espeak-ng voices, --clips-per-voice each")
    parser.add_argument("--clips-per-voice", type=int, default=3, help="--espeak-only: training clips per caption and voice")
    parser.add_argument("--test-clips-per-voice", type=int, default=2, help="--espeak-only: test clips per caption and held-out voice")
    parser.add_argument("--train-voices", type=int, default=len(TRAIN_VOICES), help="--espeak-only: use the first N training voices")
    parser.add_argument("--unheard-clips-per-engine", type=int, default=UNHEARD_CLIPS_PER_ENGINE,
                        help="audio/test_unheard: each caption this many times per engine no stage uses (RHVoice, SAM), where "
                             "installed; a build writes them too (0: none)")
    parser.add_argument("--unheard", action="store_true", help="only add audio/test_unheard to the world at --out (see --unheard-clips-per-engine)")
    parser.add_argument("--hard-clips-per-caption", type=int, default=72,
                        help="training clips per caption said the hard ways (inside a request, over music in a big room, pitched "
                             "2-9 semitones); the held-out voices say each caption once per way, requests in other words, pitched "
                             "3-7 semitones (test_carrier/, test_music_room/, test_pitch/)")
    parser.add_argument("--hard", action="store_true", help="only (re)write the hard clips of the world at --out (see --hard-clips-per-caption)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.hard:
        counts = build_hard(Path(args.out) / "audio", args.hard_clips_per_caption, seed=args.seed,
                            held_out_engine=None if args.held_out_engine == "none" else args.held_out_engine)
        print(f"wrote {counts['train']} hard training clips and {counts['test']} held-out ones to {args.out}/audio")
        return counts
    if args.unheard:
        clips = build_unheard(args.out, args.unheard_clips_per_engine, args.strength, args.seed)
        print(f"wrote {clips} clips of engines no stage uses to {args.out}/audio/test_unheard")
        return {"test_unheard": clips}
    if args.espeak_only:
        manifest = build_world(args.out, args.images_per_caption, args.clips_per_voice, args.test_clips_per_voice,
                               TRAIN_VOICES[: args.train_voices], TEST_VOICES, args.seed)
    else:
        manifest = build_world_many(args.out, args.images_per_caption, args.clips_per_caption, args.test_clips_per_engine,
                                    None if args.held_out_engine == "none" else args.held_out_engine, args.strength,
                                    args.seed, args.legacy_articles, images=not args.no_images,
                                    unheard_clips_per_engine=args.unheard_clips_per_engine,
                                    hard_clips_per_caption=args.hard_clips_per_caption)
    print(f"wrote {manifest.get('images', 0)} images, {manifest['train_clips']} training and {manifest['test_clips']} "
          f"held-out clips ({manifest.get('clips', {}).get('test_engine', 0)} of the held-out engine, "
          f"{manifest.get('clips', {}).get('test_unheard', 0)} of engines no stage uses) to {args.out} "
          f"in {manifest['seconds']} s")
    return manifest


if __name__ == "__main__":
    main()
