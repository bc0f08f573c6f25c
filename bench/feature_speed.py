"""w2v-BERT input features: the library's SeamlessM4TFeatureExtractor (numpy, clip by clip) against
hearing.features.BatchedFeatureExtractor (torch, one batched STFT) on CPU and, when there is one, on CUDA.

    OMP_NUM_THREADS=1 python bench/feature_speed.py                  # 32 clips of 6 s, clips/s side by side
    python bench/feature_speed.py --batch 256 --seconds 6 --repeats 9

Both get the same list of numpy clips (unequal lengths around `--seconds`, so padding and masks are
exercised). The torch timings include building the padded batch and copying it to the device, and on CUDA
end with a synchronize. The extractors alternate over `--repeats` rounds after one warm-up call each
(bench/side_by_side.py): a round runs the library once (seconds) and each torch extractor `--torch-calls` times
(milliseconds each). Printed: medians of seconds a batch and clips/s, the largest absolute difference from the
library's features, and each torch extractor's speed-up over the library as the median of the rounds' paired
ratios with its spread.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor  # noqa: E402

from hearing.features import BatchedFeatureExtractor  # noqa: E402
from bench.side_by_side import alternate, format_ratio, spread  # noqa: E402

SAMPLE_RATE = 16_000


def clips(batch: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Noisy harmonic tones with a syllable-like envelope, lengths within ±5 % of `seconds`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        n = int(seconds * SAMPLE_RATE * rng.uniform(0.95, 1.05))
        t = np.arange(n) / SAMPLE_RATE
        phase = 2 * np.pi * np.cumsum(rng.uniform(100, 300) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))) / SAMPLE_RATE
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
        wave = 0.3 * envelope * sum(np.sin(k * phase) / k for k in range(1, 8)) + 0.01 * rng.standard_normal(n)
        out.append(wave.astype(np.float32))
    return out


def measure(batch: int = 32, seconds: float = 6.0, repeats: int = 5, torch_calls: int = 5, devices: list[str] | None = None,
            deadline: float | None = None) -> dict:
    """The library and the batched torch extractor on each device, alternated over `repeats` rounds
    (bench/side_by_side.py): per round the library once and each torch extractor `torch_calls` times (one call takes
    milliseconds). Medians of seconds a batch, and each torch extractor's paired speed-up over the library."""
    waves = clips(batch, seconds)
    library = SeamlessM4TFeatureExtractor()

    def run_library():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return library(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)

    reference = run_library()["input_features"]
    devices = devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sides, differences = {"library": run_library}, {}
    for device in devices:
        extractor = BatchedFeatureExtractor(library, device=device)

        def run_torch(extractor=extractor, device=device):
            for _ in range(torch_calls):
                extractor(waves, sampling_rate=SAMPLE_RATE)
            if device == "cuda":
                torch.cuda.synchronize()

        differences[device] = (extractor(waves, sampling_rate=SAMPLE_RATE)["input_features"].cpu() - reference).abs().max().item()
        sides[f"torch {device}"] = run_torch
    rounds = alternate(sides, repeats, warmup=1, deadline=deadline)  # the warm-up: plans, allocations, lazy CUDA initialisation
    library_s = rounds.median("library")
    result = {"batch": batch, "seconds_of_audio": seconds, "threads": torch.get_num_threads(), "rounds": rounds.rounds,
              "stopped_early": rounds.stopped_early, "library": {"device": "cpu", **rounds.side("library"), "clips_per_second": round(batch / library_s, 1)}}
    for device in devices:
        name = f"torch {device}"
        torch_s = rounds.median(name) / torch_calls
        speedup = spread([lib / (t / torch_calls) for lib, t in zip(rounds.seconds["library"], rounds.seconds[name])])
        result[name] = {"device": device, **rounds.side(name, per=torch_calls), "clips_per_second": round(batch / torch_s, 1),
                        "speedup_over_library": speedup, "max_abs_difference": differences[device]}
    return result


def report(result: dict) -> str:
    gpu = f"; CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no CUDA"
    lines = [f"{result['batch']} clips of ~{result['seconds_of_audio']:g} s; torch {torch.__version__}, {result['threads']} CPU thread(s){gpu}; "
             f"medians of {result['rounds']} alternated rounds",
             f"{'extractor':<28}{'device':<8}{'s / batch':>10}{'clips/s':>10}{'max |diff|':>12}   speed-up over the library (paired rounds)"]
    for name, row in result.items():
        if not isinstance(row, dict):
            continue
        title = "SeamlessM4TFeatureExtractor" if name == "library" else "BatchedFeatureExtractor"
        speedup = format_ratio(row["speedup_over_library"], 1) if "speedup_over_library" in row else "1"
        lines.append(f"{title:<28}{row['device']:<8}{row['seconds']:>10.4f}{row['clips_per_second']:>10.1f}"
                     f"{row.get('max_abs_difference', 0.0):>12.1e}   {speedup}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="clips a batch")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each clip, within ±5 %%")
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds: the library once, each torch extractor --torch-calls times")
    parser.add_argument("--torch-calls", type=int, default=5, help="calls of each torch extractor in a round (each takes milliseconds)")
    args = parser.parse_args(argv)
    result = measure(args.batch, args.seconds, args.repeats, args.torch_calls)
    print(report(result), flush=True)
    return result


if __name__ == "__main__":
    main()
