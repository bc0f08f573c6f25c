"""Regenerate the app's example sounds (small 16 kHz mono wavs, a few tens of KB each).

    python -m examples.make_examples                         # everything; the sound examples tried on models/world
    python -m examples.make_examples --sound-models /tmp/m   # the sound examples tried on other models

Three come from the synthetic sound captions the project trains its smoke models on, one is a spoken
word; `world/` holds captions of the world in miniature (the app's offline default), each spoken by a voice its
models never heard in training, of a different speech engine each (piper, the engine never heard at all, among
them), through a microphone (`world.microphone`). Speech needs the engines (world.voices names each package); a
voice that is missing is skipped with a note and its file kept. The seed is fixed so the files are stable.

`world/sounds/` holds real recordings of everyday sounds for the world's sound classes, each from a source package
that no stage trained on (world.sounds' test_sources), as recorded, cut to at most SOUND_SECONDS. The models hear only
some of those recordings right, so every one of them is tried as the app would take it (the file as written, four
seeds, world.checker judging each picture), and each class's first recording drawn right for at least 3 of the 4
seeds becomes its example, at most MAX_SOUND_EXAMPLES; how many of all the held-out-source recordings pass is printed
and written to `world/sounds/ATTRIBUTION.md`, with where each example comes from and under which licence. This needs
the recordings world.sounds extracted (`python -m world.sounds`) and models that hear the sounds.
"""

from __future__ import annotations

import argparse
import tempfile
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
MAX_SOUND_EXAMPLES = 8  # enough to show the range, few enough to click through
SOUND_SEEDS = 4  # as tests/test_world_shipped.py tries each shipped example: right for at least 3 of them
SOUND_SECONDS = 4.0
MICROPHONE_STRENGTH = 0.5  # a quiet room: some noise, reverberation and band limits, as a laptop hears a person


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sound-models", type=Path, default=Path("models/world"), help="the models the sound examples are tried on "
                        "(a world.assemble output folder; default: %(default)s, the app's offline default)")
    parser.add_argument("--recordings", type=Path, default=Path("data/sound_cache/recordings"), help="where world.sounds extracted the recordings")
    args = parser.parse_args(argv)
    if not (args.sound_models / "pipeline" / "model_index.json").exists():
        parser.error(f"--sound-models {args.sound_models}: no pipeline/ there; give a folder written by python -m world.assemble")
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
    write_sound_examples(args.sound_models, args.recordings)


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


def write_sound_examples(models: Path, recordings: Path) -> None:
    """Each class's first held-out-source recording that `models` draw right for 3 of SOUND_SEEDS seeds, with its attribution."""
    import torch
    from tqdm import tqdm

    from generate.pipeline import AudioToImagePipeline
    from hearing.audio import AudioError, load_audio
    from world.checker import check_sound
    from world.scenes import BY_NAME
    from world.sounds import read_manifest

    folder = HERE / "world" / "sounds"
    rows = [r for r in read_manifest() if r["split"] == "test_sources" and (recordings / r["package"] / r["path"]).exists()]
    if not rows:
        print(f"kept {folder}: the recordings are not extracted (python -m world.sounds --out data/world)")
        return
    pipe = AudioToImagePipeline.from_pretrained(models / "pipeline", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    chosen, tried, right = {}, 0, 0
    with tempfile.TemporaryDirectory() as scratch:
        for r in tqdm(rows, desc="held-out-source recordings", unit="recording"):
            try:
                wave = load_audio(recordings / r["package"] / r["path"])[: int(SOUND_SECONDS * SAMPLE_RATE)]
            except AudioError:
                continue  # unreadable or silent: nothing to hear
            if not np.abs(wave).max(initial=0.0) > 0:
                continue
            path = Path(scratch) / f"{tried}.wav"
            sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16")  # the file as it would ship
            images = pipe(str(path), num_images_per_prompt=SOUND_SEEDS, num_inference_steps=25, guidance_scale=3.0,
                          generator=[torch.Generator().manual_seed(seed) for seed in range(SOUND_SEEDS)]).images
            tried += 1
            if sum(check_sound(image) == r["class"] for image in images) >= SOUND_SEEDS - 1:
                right += 1
                chosen.setdefault(r["class"], (r, sf.read(path, dtype="int16")[0]))
    print(f"{right} of {tried} held-out-source recordings drawn as their class for at least {SOUND_SEEDS - 1} of {SOUND_SEEDS} seeds "
          f"by {models}; {len(chosen)} classes have one")
    if not chosen:
        print(f"kept {folder}: no held-out-source recording is drawn right by {models}")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.wav"):
        old.unlink()
    lines = ["# Where the example sounds come from", "",
             "Real recordings shipped by free games and programs in Debian; each from a package that no training stage of the "
             "world used (its held-out source for the class), decoded to 16 kHz mono and cut to at most "
             f"{SOUND_SECONDS:g} s by `python -m examples.make_examples`. Each keeps its package's licence; the copyright "
             "holders are named in the package's `usr/share/doc/<package>/copyright`.", "",
             f"How they were chosen: every held-out-source recording was tried on the shipped models as the app takes it "
             f"({SOUND_SEEDS} seeds, the picture judged by `world.checker`); {right} of {tried} were drawn as their class for at "
             f"least {SOUND_SEEDS - 1} seeds, and each class's first such recording is its example (at most {MAX_SOUND_EXAMPLES}). "
             "They show what the models do when they hear a sound right, not how often they do (world/RESULTS.md).", "",
             "| file | sound | Debian package | path in the package | licence |", "|---|---|---|---|---|"]
    for name, (r, wave) in list(chosen.items())[:MAX_SOUND_EXAMPLES]:
        sf.write(folder / f"{name}.wav", wave, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"| {name}.wav | {BY_NAME[name].caption} | {r['package']} | `{r['path']}` | {r['licence']} |")
        print(f"wrote {folder / name}.wav ({BY_NAME[name].caption}, from {r['package']})")
    (folder / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
