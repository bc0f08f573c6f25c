"""Regenerate the app's example sounds (small 16 kHz mono wavs, a few tens of KB each).

    python -m examples.make_examples

Three come from the synthetic sound captions the project trains its smoke models on, one is a spoken
word (needs espeak-ng; skipped with a note if it is missing). The seed is fixed so the files are stable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from align.audio import SAMPLE_RATE
from align.synthetic_data import speak, synth_sound

HERE = Path(__file__).parent
SECONDS = 2.0  # long enough to hear, short enough to keep the repo small (the encoder repeats short clips)
SYNTHETIC = {
    "siren.wav": "a rising siren sweep",
    "ticking_clock.wav": "fast ticking like a clock",
    "thunder.wav": "deep rumbling noise like distant thunder",
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


if __name__ == "__main__":
    main()
