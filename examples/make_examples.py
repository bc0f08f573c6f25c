"""Regenerate the app's example sounds (small 16 kHz mono wavs, a few tens of KB each).

    python -m examples.make_examples

Three come from the synthetic sound captions the project trains its smoke models on, one is a spoken
word; `world/` holds captions of the world in miniature (the app's offline default) spoken in a voice its
models never heard in training. Speech needs espeak-ng (skipped with a note if it is missing). The seed is
fixed so the files are stable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from align.audio import SAMPLE_RATE
from align.synthetic_data import speak, synth_sound
from world.build import TEST_VOICES, espeak, trim_silence

HERE = Path(__file__).parent
SECONDS = 2.0  # long enough to hear, short enough to keep the repo small (the encoder repeats short clips)
SYNTHETIC = {
    "siren.wav": "a rising siren sweep",
    "ticking_clock.wav": "fast ticking like a clock",
    "thunder.wav": "deep rumbling noise like distant thunder",
}
WORLD = {
    "red_circle_left.wav": "a red circle on the left",
    "blue_square_middle.wav": "a blue square in the middle",
    "green_triangle_right.wav": "a green triangle on the right",
    "yellow_cross_left.wav": "a yellow cross on the left",
}


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
        (HERE / "world").mkdir(exist_ok=True)
        for name, caption in WORLD.items():
            sf.write(HERE / "world" / name, trim_silence(espeak(caption, TEST_VOICES[0], speed=160, pitch=50)), SAMPLE_RATE, subtype="PCM_16")
            print(f"wrote {HERE / 'world' / name} ({caption!r}, held-out voice {TEST_VOICES[0]})")


if __name__ == "__main__":
    main()
