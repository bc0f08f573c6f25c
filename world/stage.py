"""How a world training stage runs: its shared flags, threads and log, a step-or-minutes budget with its learning
rate schedule, the optimiser and the update. Each stage (world/train_*.py, world/pretrain_speech.py) reads top to
bottom with these."""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

from hearing.files import write_json_atomic as write_json  # noqa: F401  (the stages write their JSON through it)


def use_threads(threads: int | None = None) -> None:
    """Use the CPU's cores. These stages train in fp32: on a CPU with bf16 hardware, bf16 autocast slows the world's UNet
    and gains CLAP little (bench/cpu_precision.py, figures in docs/benchmarks.md); the alignment gains most and takes it
    (world.train_audio --precision)."""
    torch.set_num_threads(threads or int(os.environ.get("WORLD_THREADS", os.cpu_count() or 2)))


class Log:
    """Prints a line with the elapsed time and appends it to a log file, so a background run can be followed."""

    def __init__(self, path: str | Path | None = None):
        self.start = time.perf_counter()
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.start:7.1f}s] {message}"
        print(line, flush=True)
        if self.path:
            with self.path.open("a") as f:
                f.write(line + "\n")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class Budget:
    """Train for `steps` steps or `minutes` of wall time, whichever ends first.

    The learning rate follows a warmup and a cosine decay over the *progress*, the larger of the step share
    and the time share, so a run cut short by the clock still ends at a low learning rate, not mid-climb.
    This keeps each stage inside its share of the rebuild on a busy machine; the steps actually done are recorded.
    """

    def __init__(self, steps: int, minutes: float | None = None, warmup_share: float = 0.03):
        self.steps, self.seconds = steps, (minutes * 60 if minutes else None)
        self.warmup_share = warmup_share
        self.start = time.perf_counter()
        self.step = 0

    @property
    def progress(self) -> float:
        share = self.step / self.steps
        if self.seconds:
            share = max(share, (time.perf_counter() - self.start) / self.seconds)
        return min(share, 1.0)

    def lr_factor(self) -> float:
        p = self.progress
        return min((p + 1e-3) / self.warmup_share, 0.5 * (1 + math.cos(math.pi * p)))

    def next(self) -> bool:
        """Advance one step; False once the budget is spent."""
        if self.progress >= 1.0:
            return False
        self.step += 1
        return True

    def set_lr(self, optimizer, base_lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * self.lr_factor()

    def each_step(self, optimizer, base_lr: float):
        """Every step of the budget, its learning rate set first: `for step in budget.each_step(optimizer, lr): ...`."""
        while self.next():
            self.set_lr(optimizer, base_lr)
            yield self.step


def start_stage(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Path, Log]:
    """A stage's first moves: its flags, its threads, its output folder and the log in it."""
    args = parser.parse_args(argv)
    use_threads(args.threads)
    out = Path(args.out)
    return args, out, Log(out / "log.txt")


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None = 1.0) -> None:
    """One optimizer step on `loss`, gradients clipped to `max_grad_norm` (None: not clipped)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_grad_norm)
    optimizer.step()


def optimise(parameters, args: argparse.Namespace, weight_decay: float) -> tuple[torch.optim.Optimizer, Budget, torch.Generator]:
    """AdamW at `--lr`, the `--steps` / `--minutes` budget, and the seeded generator a stage draws its batches from."""
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=weight_decay)
    return optimizer, Budget(args.steps, args.minutes), torch.Generator().manual_seed(args.seed)


def stage_parser(doc: str, stage: str, steps: int, batch_size: int | None = None, world: bool = True, minutes: bool = True) -> argparse.ArgumentParser:
    """The flags every training stage shares; a stage adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if world:
        parser.add_argument("--world", default="data/world", help="the built world (python -m world.build)")
    parser.add_argument("--out", default=f"runs/world/{stage}")
    parser.add_argument("--steps", type=int, default=steps)
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size)
    if minutes:
        parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes even if steps remain (see world.stage.Budget)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    return parser
