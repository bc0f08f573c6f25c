"""Synthetic audio-caption pairs whose sounds really differ with their captions, for tests and demos.

Writes an audiofolder: `<out>/train/` and `<out>/test/`, each with wav files and a `metadata.jsonl` of
`{"file_name": ..., "caption": ...}` rows, the layout `align.data` and `datasets`' audiofolder read.
Every clip draws its pitch, tempo, level and background noise at random, so a model must learn the
kind of sound, not memorise a waveform. With `espeak-ng` installed, spoken captions are added.

    python -m world.synthetic_data --out data/synthetic --clips-per-caption 40
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE
from world.espeak import espeak

SOUND_CAPTIONS = [
    "a low steady hum",
    "a high pitched whistle",
    "a rising siren sweep",
    "a falling slide whistle",
    "deep rumbling noise like distant thunder",
    "bright hissing noise like steam",
    "fast ticking like a clock",
    "slow heavy knocking on a door",
]
SPOKEN_WORDS = ["dog", "rain", "bell", "ocean"]


def _tone(t, freq):
    return np.sin(2 * np.pi * freq * t)


def _chirp(t, f0, f1):
    k = (f1 - f0) / t[-1]
    return np.sin(2 * np.pi * (f0 * t + 0.5 * k * t**2))


def _band_noise(n, low, high, rng):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-9)


def _clicks(t, rate, rng, decay):
    out = np.zeros_like(t)
    period = int(SAMPLE_RATE / rate)
    burst = np.exp(-np.arange(period) / (SAMPLE_RATE * decay)) * rng.standard_normal(period)
    for start in range(int(rng.integers(0, period)), len(t) - period, period):
        out[start : start + period] += burst
    return out / (np.abs(out).max() + 1e-9)


def synth_sound(caption: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One random rendition of a sound caption (mono float32, 16 kHz)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    jitter = rng.uniform(0.85, 1.15)
    kind = SOUND_CAPTIONS.index(caption)
    wave = [
        lambda: _tone(t, 110 * jitter) + 0.5 * _tone(t, 220 * jitter),
        lambda: _tone(t, 2400 * jitter),
        lambda: _chirp(t, 300 * jitter, 3000 * jitter),
        lambda: _chirp(t, 3000 * jitter, 300 * jitter),
        lambda: _band_noise(n, 20, 200 * jitter, rng),
        lambda: _band_noise(n, 4000 * jitter, 7900, rng),
        lambda: _clicks(t, 8 * jitter, rng, 0.002),
        lambda: _clicks(t, 2 * jitter, rng, 0.03),
    ][kind]()
    wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.3, 0.9)
    wave = wave + rng.uniform(0.0, 0.03) * rng.standard_normal(n)
    return wave.astype(np.float32)


def speak(text: str, rng: np.random.Generator) -> np.ndarray | None:
    """`text` spoken by espeak-ng with a random voice, speed and pitch; None if espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        return None
    voice = rng.choice(["en", "en-us", "en-gb-x-rp", "en+m3", "en+f2", "en+f4"])
    speed, pitch = int(rng.integers(120, 200)), int(rng.integers(20, 80))  # in this order: the same clips for a seed
    return espeak(text, str(voice), words_per_minute=speed, pitch=pitch)


def make_synthetic_audiofolder(
    out: str | Path,
    clips_per_caption: int = 20,
    test_clips_per_caption: int = 4,
    seconds: float = 2.0,
    seed: int = 0,
    spoken: bool | None = None,
) -> Path:
    """Write the train/ and test/ splits and return `out`. `spoken=None` adds spoken captions if espeak-ng is installed."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    spoken = shutil.which("espeak-ng") is not None if spoken is None else spoken
    captions = list(SOUND_CAPTIONS) + ([f"a voice saying {w}" for w in SPOKEN_WORDS] if spoken else [])
    for split, count in (("train", clips_per_caption), ("test", test_clips_per_caption)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for ci, caption in enumerate(captions):
            for k in range(count):
                if caption.startswith("a voice saying"):
                    wave = speak(caption.removeprefix("a voice saying "), rng)
                    if wave is None:
                        raise RuntimeError("spoken captions need espeak-ng: apt-get install espeak-ng, or pass spoken=False")
                else:
                    wave = synth_sound(caption, seconds * rng.uniform(0.8, 1.2), rng)
                name = f"{ci:02d}_{k:03d}.wav"
                sf.write(folder / name, wave, SAMPLE_RATE)
                rows.append({"file_name": name, "caption": caption})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write (train/ and test/ go inside)")
    parser.add_argument("--clips-per-caption", type=int, default=20, help="training clips per caption")
    parser.add_argument("--test-clips-per-caption", type=int, default=4, help="held-out clips per caption")
    parser.add_argument("--seconds", type=float, default=2.0, help="mean clip length (each clip varies ±20%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spoken", choices=["auto", "yes", "no"], default="auto", help="add spoken captions (needs espeak-ng)")
    args = parser.parse_args(argv)
    spoken = {"auto": None, "yes": True, "no": False}[args.spoken]
    out = make_synthetic_audiofolder(args.out, args.clips_per_caption, args.test_clips_per_caption, args.seconds, args.seed, spoken)
    print(f"wrote {out}/train and {out}/test")


if __name__ == "__main__":
    main()
