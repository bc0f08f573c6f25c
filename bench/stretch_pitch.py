"""Whether world/microphone.py's own time-stretch (WSOLA) and pitch-shift should give way to a library: speed and accuracy.

    python bench/stretch_pitch.py                # 7 alternating rounds, writes bench/results/stretch_pitch.json
    python bench/stretch_pitch.py --repeats 11 --clip examples/world/green_triangle_right.wav

At one thread, ours (`time_stretch`, `pitch_shift`) against librosa (effects.time_stretch / pitch_shift), pedalboard
(time_stretch; PitchShift, and the offline time_stretch with pitch_shift_in_semitones) and torchaudio
(functional.pitch_shift), each library only if it imports. For time_stretch at 0.8 and 1.25 and pitch shift at +-3
and +-7 semitones: milliseconds per second of 16 kHz audio (median of rounds, implementations alternated within each
round); on a 1 s harmonic tone (220 Hz and 7 harmonics) the fundamental's error in cents (zero-padded FFT peak, middle
0.6 s) and the length error in samples (pitch: the input length; stretch: round(len / factor), ours' promise); on a
speech clip the log-spectral distance (dB) of the round trip +k then -k semitones (-k then +k on the -k row); and
whether the same input twice gives identical output. Prints one markdown table.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread, set before numpy and friends load their pools

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from bench.side_by_side import alternate  # noqa: E402
from world.microphone import pitch_shift, time_stretch  # noqa: E402

SR = 16000
STRETCHES = (0.8, 1.25)
SEMITONES = (3, -3, 7, -7)
F0 = 220.0
RESULTS = ROOT / "bench" / "results" / "stretch_pitch.json"
CLIP = ROOT / "examples" / "world" / "red_circle_left.wav"


def implementations() -> dict[str, dict]:
    """name -> {"version", "stretch": f(wave, factor) or None, "pitch": f(wave, semitones)}; factor > 1 is faster."""
    found = {"ours": {"version": "world/microphone.py", "stretch": time_stretch, "pitch": pitch_shift}}
    try:
        import librosa
        found["librosa"] = {"version": librosa.__version__, "stretch": lambda w, f: librosa.effects.time_stretch(w, rate=f),
                            "pitch": lambda w, k: librosa.effects.pitch_shift(w, sr=SR, n_steps=k)}
    except Exception as error:  # noqa: BLE001 - any failure to import means: not available here
        print(f"skipping librosa: {type(error).__name__}: {str(error)[:120]}")
    try:
        import pedalboard
        found["pedalboard"] = {"version": pedalboard.__version__,
                               "stretch": lambda w, f: pedalboard.time_stretch(w[None], SR, stretch_factor=f)[0],
                               "pitch": lambda w, k: pedalboard.PitchShift(semitones=k)(w[None], SR)[0]}
        found["pedalboard-offline"] = {"version": pedalboard.__version__, "stretch": None,
                                       "pitch": lambda w, k: pedalboard.time_stretch(w[None], SR, pitch_shift_in_semitones=k)[0]}
    except Exception as error:  # noqa: BLE001
        print(f"skipping pedalboard: {type(error).__name__}: {str(error)[:120]}")
    try:
        import torchaudio
        found["torchaudio"] = {"version": torchaudio.__version__, "stretch": None,
                               "pitch": lambda w, k: torchaudio.functional.pitch_shift(torch.from_numpy(w), SR, k).numpy()}
    except Exception as error:  # noqa: BLE001
        print(f"skipping torchaudio: {type(error).__name__}: {str(error)[:120]}")
    return found


def tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * F0 * h * t) / h for h in range(1, 9))).astype(np.float32)


def fundamental(wave: np.ndarray, expected: float) -> float:
    """The strongest spectral peak within half an octave of `expected` (Hz), from a zero-padded FFT of the middle 60 %."""
    middle = wave[int(0.2 * len(wave)) : int(0.8 * len(wave))].astype(np.float64)
    n = 1 << 20  # 0.015 Hz bins
    power = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), n))
    lo, hi = int(expected / np.sqrt(2) * n / SR), int(expected * np.sqrt(2) * n / SR)
    i = lo + int(np.argmax(power[lo:hi]))
    a, b, c = np.log(power[i - 1 : i + 2] + 1e-30)  # parabolic interpolation of the peak
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * SR / n


def log_spectral_distance(a: np.ndarray, b: np.ndarray, n_fft: int = 512, hop: int = 128) -> float:
    """Mean over frames of the RMS difference (dB) of the power spectra; a floor 80 dB under the loudest bin."""
    def power(x):
        x = np.pad(x.astype(np.float64), (0, max(0, len(a) - len(x))))[: len(a)]
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
        return np.abs(np.fft.rfft(frames, axis=1)) ** 2
    pa, pb = power(a), power(b)
    floor = 1e-8 * pa.max()
    diff = 10 * np.log10(pa + floor) - 10 * np.log10(pb + floor)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/stretch_pitch.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="alternating timed rounds per operation (default %(default)s)")
    parser.add_argument("--clip", type=Path, default=CLIP, help="a 16 kHz mono speech wav (default %(default)s)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    speech, rate = sf.read(args.clip, dtype="float32")
    assert rate == SR and speech.ndim == 1, f"{args.clip} must be 16 kHz mono"
    impls, harmonic = implementations(), tone()
    ops = [("stretch", f) for f in STRETCHES] + [("pitch", k) for k in SEMITONES]
    rows = []
    for kind, x in ops:
        sides = {name: (lambda fn=impl[kind], x=x: fn(speech, x)) for name, impl in impls.items() if impl[kind] is not None}
        rounds = alternate(sides, args.repeats)
        for name in sides:
            fn = impls[name][kind]
            out = fn(harmonic, x)
            if kind == "stretch":
                expected_f0, expected_len = F0, int(round(len(harmonic) / x))
                round_trip = None
            else:
                expected_f0, expected_len = F0 * 2 ** (x / 12), len(harmonic)
                back = np.asarray(fn(np.asarray(fn(speech, x), np.float32), -x), np.float32)
                round_trip = log_spectral_distance(speech, back)
            rows.append({"implementation": name, "version": impls[name]["version"], "operation": kind, "amount": x,
                         "ms_per_audio_second": 1000 * rounds.median(name) / (len(speech) / SR),
                         "f0_error_cents": 1200 * np.log2(fundamental(out, expected_f0) / expected_f0),
                         "length_error_samples": len(out) - expected_len,
                         "round_trip_lsd_db": round_trip,
                         "deterministic": bool(np.array_equal(fn(speech, x), fn(speech, x)))})
    print(f"\n{len(speech) / SR:.2f} s clip {args.clip.name}, 1 thread, median of {args.repeats} rounds\n")
    print("| implementation | operation | ms / s audio | f0 error (cents) | length error (samples) | round trip LSD (dB) | deterministic |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (list(impls).index(r["implementation"]), r["operation"] == "pitch")):
        label = f"time_stretch {r['amount']}" if r["operation"] == "stretch" else f"pitch_shift {r['amount']:+d}"
        lsd = "-" if r["round_trip_lsd_db"] is None else f"{r['round_trip_lsd_db']:.2f}"
        print(f"| {r['implementation']} | {label} | {r['ms_per_audio_second']:.1f} | {r['f0_error_cents']:+.2f} | "
              f"{r['length_error_samples']:+d} | {lsd} | {'yes' if r['deterministic'] else 'NO'} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"clip": str(args.clip.relative_to(ROOT) if args.clip.is_relative_to(ROOT) else args.clip), "repeats": args.repeats,
            "versions": {name: impl["version"] for name, impl in impls.items()}, "numpy": np.__version__, "torch": torch.__version__}
    args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
