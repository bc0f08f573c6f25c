"""Regenerate the app's example sounds (small 16 kHz mono wavs, a few tens of KB each).

    python -m examples.make_examples

Three come from the synthetic sound captions the project trains its smoke models on, one is a spoken
word; `world/` holds captions of the world in miniature (the app's offline default), each spoken by a voice its
models never heard in training, of a different speech engine each (piper, the engine never heard at all, among
them), through a microphone (`world.microphone`). Speech needs the engines (world.voices names each package); a
voice that is missing is skipped with a note and its file kept. The seed is fixed so the files are stable.

`world/sounds/` holds real recordings of everyday sounds for the world's sound classes, each from a source package
that no stage trained on (world.sounds' test_sources), as recorded, cut to at most SOUND_SECONDS; they need the
recordings world.sounds extracted (`python -m world.sounds`), and `world/sounds/ATTRIBUTION.md` says where each comes
from and under which licence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE
from world.synthetic_data import speak, synth_sound

HERE = Path(__file__).parent
SECONDS = 2.0  # long enough to hear, short enough to keep the repo small (the encoder repeats short clips)
SYNTHETIC = {
    "siren.wav": "a rising siren sweep",
    "ticking_clock.wav": "fast ticking like a clock",
    "thunder.wav": "deep rumbling noise like distant thunder",
}
WORLD = {  # file: (caption, held-out voice: world.voices' engine/name)
    "red_circle_left.wav": ("a red circle on the left", "piper/joe"),
    "blue_square_middle.wav": ("a blue square in the middle", "flite/rms"),
    "green_triangle_right.wav": ("a green triangle on the right", "espeak-ng/en-029+f4"),
    "yellow_cross_left.wav": ("a yellow cross on the left", "mbrola/mb-us2"),
    "orange_circle_right.wav": ("an orange circle on the right", "pico/en-GB"),
}
SOUND_EXAMPLES = ("dog", "cow", "chirping_birds", "crackling_fire", "helicopter", "footsteps")  # classes shown in the app
SOUND_SECONDS = 4.0
MICROPHONE_STRENGTH = 0.5  # a quiet room: some noise, reverberation and band limits, as a laptop hears a person


def main() -> None:
    rng = np.random.default_rng(0)
    for name, caption in SYNTHETIC.items():
        sf.write(HERE / name, synth_sound(caption, SECONDS, rng), SAMPLE_RATE, subtype="PCM_16")
        print(f"wrote {HERE / name} ({caption})")
    spoken = speak("a dog barking", rng)
    if spoken is None:
        print("espeak-ng not installed: kept the existing spoken example (apt-get install espeak-ng to remake it)")
    else:
        sf.write(HERE / "spoken_dog.wav", spoken, SAMPLE_RATE, subtype="PCM_16")
        print(f"wrote {HERE / 'spoken_dog.wav'} (a voice saying 'a dog barking')")
    write_world_examples(np.random.default_rng(1))
    write_sound_examples()


def write_world_examples(rng: np.random.Generator) -> None:
    """Each world caption in its held-out voice, trimmed and passed through a microphone."""
    from world.microphone import microphone, trim_silence
    from world.voices import find_voice

    (HERE / "world").mkdir(exist_ok=True)
    for name, (caption, key) in WORLD.items():
        try:
            wave = find_voice(key).synthesize(caption)
        except (KeyError, ValueError, RuntimeError) as error:
            print(f"kept {HERE / 'world' / name}: voice {key} is not available ({error})")
            continue
        wave = microphone(trim_silence(wave), rng, MICROPHONE_STRENGTH)
        sf.write(HERE / "world" / name, wave, SAMPLE_RATE, subtype="PCM_16")
        print(f"wrote {HERE / 'world' / name} ({caption!r}, held-out voice {key})")


def write_sound_examples(recordings: Path = Path("data/sound_cache/recordings")) -> None:
    """The first held-out-source recording of each class in SOUND_EXAMPLES, with its attribution."""
    from hearing.audio import load_audio
    from world.scenes import BY_NAME
    from world.sounds import read_manifest

    folder = HERE / "world" / "sounds"
    rows = [next((r for r in read_manifest() if r["class"] == name and r["split"] == "test_sources"), None) for name in SOUND_EXAMPLES]
    if not all(r and (recordings / r["package"] / r["path"]).exists() for r in rows):
        print(f"kept {folder}: the recordings are not extracted (python -m world.sounds --out data/world)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Where the example sounds come from", "",
             "Real recordings shipped by free games and programs in Debian; each from a package that no training stage of the "
             "world used (its held-out source for the class), decoded to 16 kHz mono and cut to at most "
             f"{SOUND_SECONDS:g} s by `python -m examples.make_examples`. Each keeps its package's licence; the copyright "
             "holders are named in the package's `usr/share/doc/<package>/copyright`.", "",
             "| file | sound | Debian package | path in the package | licence |", "|---|---|---|---|---|"]
    for name, r in zip(SOUND_EXAMPLES, rows):
        wave = load_audio(recordings / r["package"] / r["path"])[: int(SOUND_SECONDS * SAMPLE_RATE)]
        sf.write(folder / f"{name}.wav", wave, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"| {name}.wav | {BY_NAME[name].caption} | {r['package']} | `{r['path']}` | {r['licence']} |")
        print(f"wrote {folder / name}.wav ({BY_NAME[name].caption}, from {r['package']})")
    (folder / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
