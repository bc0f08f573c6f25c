"""Build the paired world: captioned pictures, and each caption spoken by many espeak-ng voices.

    python -m world.build --out data/world            # full size (about a minute)
    python -m world.build --out /tmp/w --images-per-caption 2 --clips-per-voice 1 --train-voices 1

Layout written (both halves are the folders `datasets`' imagefolder / audiofolder and `align.data` read):

    <out>/images/metadata.jsonl     file_name, caption, shape, colour, position; <out>/images/*.png
    <out>/audio/train/metadata.jsonl   file_name, caption, voice, speed, pitch, ...; wav files (16 kHz)
    <out>/audio/test/...            the same for the held-out voices, which never speak in train/
    <out>/world.json                what was built, with which voices and seed

A voice is an espeak-ng accent plus a voice variant (timbre); every clip also draws its speed, pitch, level,
background noise and room reverberation at random. The held-out voices use accents and variants that no
training voice uses, so the test measures generalisation to unheard speakers, not to unheard renditions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from align.audio import SAMPLE_RATE, to_mono_16k
from world.scenes import all_scenes, render

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
    """`text` spoken by espeak-ng, as mono float32 at 16 kHz."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("building the world needs espeak-ng: apt-get install espeak-ng")
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run([binary, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text], check=True, capture_output=True)
        wave, rate = sf.read(tmp.name, dtype="float32")
    return to_mono_16k(wave, rate)


def trim_silence(wave: np.ndarray, threshold: float = 0.01, margin_s: float = 0.05) -> np.ndarray:
    """Cut espeak-ng's leading and trailing silence (keeping a short margin) so the window holds speech."""
    loud = np.nonzero(np.abs(wave) > threshold * np.abs(wave).max())[0]
    if len(loud) == 0:
        return wave
    margin = int(margin_s * SAMPLE_RATE)
    return wave[max(loud[0] - margin, 0) : loud[-1] + margin]


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/world", help="folder to write (its images/ and audio/ are replaced)")
    parser.add_argument("--images-per-caption", type=int, default=150)
    parser.add_argument("--clips-per-voice", type=int, default=3, help="training clips per caption and training voice")
    parser.add_argument("--test-clips-per-voice", type=int, default=2, help="test clips per caption and held-out voice")
    parser.add_argument("--train-voices", type=int, default=len(TRAIN_VOICES), help="use the first N training voices (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = build_world(args.out, args.images_per_caption, args.clips_per_voice, args.test_clips_per_voice,
                           TRAIN_VOICES[: args.train_voices], TEST_VOICES, args.seed)
    print(f"wrote {manifest['images']} images, {manifest['train_clips']} training and {manifest['test_clips']} "
          f"held-out clips to {args.out} in {manifest['seconds']} s")
    return manifest


if __name__ == "__main__":
    main()
