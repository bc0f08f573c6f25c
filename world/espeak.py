"""The one place that runs the espeak-ng binary: a text in, its sound read back as mono float32 at 16 kHz
(`espeak`), or its phonemes in espeak-ng's own notation (`espeak_phonemes`).

Its callers choose the voice and the prosody: `world.synthetic_data.speak` (spoken captions) and
`world.voices` (the espeak-ng, espeak-ng-l2 and mbrola engines, whose errors it names with the voice and the package).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import to_mono_16k


def _binary() -> str:
    return shutil.which("espeak-ng") or "espeak-ng"  # the bare name: a missing binary raises FileNotFoundError when run


class EspeakNoSound(RuntimeError):
    """espeak-ng exited 0 but wrote no readable sound; the reader's error is the `__cause__`."""


def espeak(text: str, voice: str, words_per_minute: int | None = None, pitch: int | None = None,
           word_gap: int | None = None, timeout: float | None = None) -> np.ndarray:
    """`text` spoken by espeak-ng's `voice` (`-v`: an accent, `accent+variant`, or an mbrola voice such as
    `mb-us1`), at `words_per_minute` (`-s`), `pitch` (`-p`, 0-99) and `word_gap` (`-g`, in 10 ms units);
    espeak-ng's defaults for what is None (and for a word gap of 0). The text goes through a file (`-f`).

    Raises FileNotFoundError if espeak-ng is not installed, subprocess.TimeoutExpired after `timeout` seconds,
    subprocess.CalledProcessError (its stderr kept) if espeak-ng fails, and EspeakNoSound if it wrote nothing.
    """
    binary = _binary()
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        (Path(tmp) / "text.txt").write_text(text)
        cmd = [binary, "-v", str(voice), "-w", f"{tmp}/out.wav", "-f", f"{tmp}/text.txt"]
        if words_per_minute is not None:
            cmd += ["-s", str(int(words_per_minute))]
        if pitch is not None:
            cmd += ["-p", str(int(pitch))]
        if word_gap:
            cmd += ["-g", str(int(word_gap))]
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=True)
        try:
            wave, rate = sf.read(f"{tmp}/out.wav", dtype="float32")
        except Exception as error:  # exited 0 but wrote nothing usable
            raise EspeakNoSound(f"espeak-ng wrote no readable sound ({error})") from error
    return to_mono_16k(wave, rate)


def espeak_phonemes(text: str, voice: str, timeout: float | None = None) -> str:
    """`text` as the phonemes `voice` would speak (`-q -x`: espeak-ng's notation, e.g. "a# r'Ed s'3:k@L"), its clauses
    joined by spaces. Text in `[[...]]` is read as phonemes already, so this also shows what a voice's phoneme table
    keeps of them. Raises as `espeak` does."""
    binary = _binary()
    run = subprocess.run([binary, "-v", str(voice), "-q", "-x", "--stdin"], input=text, capture_output=True, text=True,
                         timeout=timeout, check=True)  # stdin: a text may start with "-"
    return " ".join(run.stdout.split())
