"""w2v-BERT input features: the library's SeamlessM4TFeatureExtractor (numpy, clip by clip) against
align.features.BatchedFeatureExtractor (torch, one batched STFT) on CPU and, when there is one, on CUDA.

    OMP_NUM_THREADS=1 python bench/feature_speed.py                  # 32 clips of 6 s, clips/s side by side
    python bench/feature_speed.py --batch 256 --seconds 6 --repeats 20

Both get the same list of numpy clips (unequal lengths around `--seconds`, so padding and masks are
exercised). The torch timings include building the padded batch and copying it to the device, and on CUDA
end with a synchronize. Each figure is the median over `--repeats` calls after one warm-up call; the
library is timed over fewer calls (`--library-repeats`), as one call takes seconds. The last column is
the largest absolute difference from the library's features in that run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor  # noqa: E402

from align.features import BatchedFeatureExtractor  # noqa: E402

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


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: plans, allocations, lazy CUDA initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of the torch extractor")
    parser.add_argument("--library-repeats", type=int, default=2, help="timed calls of the library extractor")
    args = parser.parse_args(argv)

    waves = clips(args.batch, args.seconds)
    library = SeamlessM4TFeatureExtractor()

    def run_library():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return library(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)

    reference = run_library()["input_features"]
    gpu = f"; CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no CUDA"
    print(f"{args.batch} clips of ~{args.seconds:g} s; torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s){gpu}")
    print(f"{'extractor':<28}{'device':<10}{'s / batch':>10}{'clips/s':>10}{'speed-up':>10}{'max |diff|':>12}")
    library_s = median_seconds(run_library, args.library_repeats)
    print(f"{'SeamlessM4TFeatureExtractor':<28}{'cpu':<10}{library_s:>10.3f}{args.batch / library_s:>10.1f}{1.0:>10.1f}{0.0:>12.1e}")

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        extractor = BatchedFeatureExtractor(library, device=device)

        def run_torch():
            out = extractor(waves, sampling_rate=SAMPLE_RATE)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        diff = (run_torch()["input_features"].cpu() - reference).abs().max().item()
        torch_s = median_seconds(run_torch, args.repeats)
        print(f"{'BatchedFeatureExtractor':<28}{device:<10}{torch_s:>10.4f}{args.batch / torch_s:>10.1f}{library_s / torch_s:>10.1f}{diff:>12.1e}")


if __name__ == "__main__":
    main()
