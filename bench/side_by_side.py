"""Timing two (or more) things side by side on a machine that other jobs share: alternate them, pair them, take medians.

Timed once each, one after the other, two things compare badly on a shared machine: a second job that starts or
stops in between lands on one side only (two runs of the same 512 px comparison gave ratios of 1.39 and 0.92).
So every side-by-side bench here runs its sides in rounds, alternating the order from round to round (A B, B A,
A B, ...: neither side always runs first, on a warmer cache or a freshly trimmed heap), pairs the two timings of
each round, and reports the median of the paired ratios with its spread. A load that lasts a round slows both
sides of that pair alike; one that hits a single side spoils one pair, which the median ignores and the spread shows.

Used by bench/pipeline_speed.py, bench/train_throughput.py, bench/feature_speed.py, bench/cpu_precision.py and
bench/gpu_figures.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import psutil
import torch


def trim_heap() -> None:
    """Hand freed heap memory back to the system (glibc `malloc_trim`), where the C library has it.

    A large call grows the heap, and glibc keeps part of what the call frees; the next call reuses those pages
    without raising the resident size. Measured as "peak RSS above the level before the call", whichever call
    runs first then carries growth that the next one gets for free. At SD 2.1's size, 512 px (random weights, one
    step; both peaks fall in the VAE decode, which the two pipelines share): audio → image as the first call of
    the process rose 1.16 GB above its pre-call level and text → image right after it 0.93 GB, to the same
    absolute peak (8.81 GB); later untrimmed calls of either gave 0.85-1.00 GB, and with the heap trimmed before
    each call both gave 1.12-1.20 GB. Trimming makes the level before a call the memory in use, whichever call
    ran before."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


class PeakMemory:
    """Peak memory during a block: the CUDA allocator's peak (weights included), or on a CPU the sampled resident
    set size above the level before the block (the working memory beyond what was already held), the heap trimmed
    first (`trim_heap`) so that level is the memory in use."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval, self.peak_gb = device, interval, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        trim_heap()
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.peak_gb = (self.peak - self.base) / 2**30
        return False


@dataclass
class Rounds:
    """What `alternate` measured: per side, the seconds of each round (and the peak memory, when measured)."""

    seconds: dict[str, list[float]]
    peak_gb: dict[str, list[float]] = field(default_factory=dict)
    stopped_early: bool = False  # the deadline came before every round had run

    @property
    def rounds(self) -> int:
        return len(next(iter(self.seconds.values())))

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])

    def ratio(self, numerator: str, denominator: str) -> dict:
        """The paired ratios numerator / denominator, round by round: their median and spread."""
        return spread([a / b for a, b in zip(self.seconds[numerator], self.seconds[denominator])])

    def side(self, name: str, per: float = 1.0) -> dict:
        """One side's figures for a JSON file: the median seconds (of `per` units of work) and every round's."""
        out = {"seconds": round(self.median(name) / per, 6), "rounds_seconds": [round(s / per, 6) for s in self.seconds[name]]}
        if name in self.peak_gb:
            peaks = self.peak_gb[name]
            out.update(peak_memory_gb=round(statistics.median(peaks), 3), peak_memory_gb_range=[round(min(peaks), 3), round(max(peaks), 3)])
        return out


def spread(values: list[float]) -> dict:
    """Median, quartiles and range of a list of paired ratios (the quartiles of one value are that value)."""
    q1, median, q3 = np.percentile(values, [25, 50, 75]) if values else (float("nan"),) * 3
    return {"median": round(float(median), 4), "q1": round(float(q1), 4), "q3": round(float(q3), 4),
            "min": round(float(min(values, default=float("nan"))), 4), "max": round(float(max(values, default=float("nan"))), 4),
            "pairs": len(values)}


def format_ratio(summary: dict, digits: int = 2) -> str:
    """'1.05 (IQR 1.01-1.09, range 0.98-1.12; 5 pairs)': the figure to quote, and how far to trust it."""
    f = f"{{:.{digits}f}}".format
    return (f"{f(summary['median'])} (IQR {f(summary['q1'])}-{f(summary['q3'])}, range {f(summary['min'])}-{f(summary['max'])}; "
            f"{summary['pairs']} pair{'s' if summary['pairs'] != 1 else ''})")


def alternate(sides: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, deadline: float | None = None,
              device: torch.device | None = None, memory: bool = False, progress: str | None = None) -> Rounds:
    """Run each side `warmup` times untimed, then `repeats` rounds of each side once, the order reversed every other
    round; return every timing.

    deadline: a `time.perf_counter()` value after which no new round starts (the first always runs): a time budget.
    device: on CUDA the clock stops after a synchronize, so queued kernels are counted.
    memory: also measure each call's peak memory (`PeakMemory`).
    progress: print each round's timings under this label, for work long enough to want a sign of life."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    result = Rounds({name: [] for name in names}, {name: [] for name in names} if memory else {})
    cuda = device is not None and device.type == "cuda"
    for r in range(repeats):
        if r > 0 and deadline is not None and time.perf_counter() > deadline:
            result.stopped_early = True
            break
        for name in names if r % 2 == 0 else names[::-1]:
            meter = PeakMemory(device or torch.device("cpu")) if memory else None
            if meter is not None:
                meter.__enter__()
            if cuda:
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            sides[name]()
            if cuda:
                torch.cuda.synchronize(device)
            result.seconds[name].append(time.perf_counter() - started)
            if meter is not None:
                meter.__exit__(None, None, None)
                result.peak_gb[name].append(meter.peak_gb)
        if progress:
            print(f"  {progress}: round {r + 1}/{repeats}: " + ", ".join(f"{n} {result.seconds[n][-1]:.3f} s" for n in names), flush=True)
    return result
