"""Every GPU figure in one command, in under 10 minutes: one JSON file and one table.

    python bench/gpu_figures.py                  # on a CUDA machine: writes bench/results/gpu_figures.json, prints the table
    python bench/gpu_figures.py --dry-run        # the same code path with the tiny models on the CPU, in seconds
    python bench/gpu_figures.py --budget 900 --json figures.json

The parts, in this order, each with its own time budget in seconds (`--budget` scales them all):
  pipeline_768        audio → image against text → image, 768 px, 25 steps, CFG 7.5 (bench/pipeline_speed.py `compare`)   100
  pipeline_512        the same at 512 px                                                                                      60
  few_step            SD-Turbo's sampler (Euler, trailing timesteps, no guidance), 512 px, 1, 2 and 4 steps                 45
  train_throughput    an alignment step at real size, cached targets against the text encoder every step
                      (bench/train_throughput.py `measure`)                                                                   60
  feature_extraction  w2v-BERT features, the library's numpy against the batched torch extractor on CPU and CUDA
                      (bench/feature_speed.py `measure`)                                                                      40
  ladder              audio → image, 768 px, 25 steps, one speed-up added at a time: fp32 → fp16 → SDPA →
                      torch.compile of the UNet → model CPU offload (bench/pipeline_speed.py `ladder`)                       210

Side-by-side figures alternate their two sides over several rounds and report the median of the paired ratios
with its spread (bench/side_by_side.py). A part starts no new round (no new row, no new rung) once its budget is
spent, the ladder compiles only with 2 minutes of its budget left, and no part starts once the whole budget (600 s,
imports included) is spent, so the run ends near its budget even when a part is slower than planned; the JSON says
what was cut. A part that fails records its error and the rest still run; the
exit status is then 1.

Models: SD 2.1's UNet, VAE and OpenCLIP-H text tower and w2v-BERT 2.0 with the adapter, at their real sizes with
random weights drawn on the GPU from their configs (architectures/real_models.py): a call's time and memory do not
depend on the weights' values, so nothing is downloaded. fp16 on the GPU (fp32 for the ladder's first rung and the
training step, as align.train runs it). SD-Turbo has SD 2.1's architecture, so the same models time its few steps.

--dry-run builds the tiny models instead (architectures/tiny_models.py) and runs every part on the CPU, at 32 px
for "768", 16 px for "512" and the ladder, 2 steps for "25" (1 on the ladder, whose bf16 rungs are slow on a CPU
without bf16 hardware), 2 rounds a comparison, without compiling (minutes on a CPU): what the test suite runs, so the
script works the day a GPU comes. Its figures measure the machinery, not the models.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # the budget counts the imports too

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the repo

import diffusers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from hearing.device import resolve_device_and_dtype  # noqa: E402
from architectures import real_models  # noqa: E402
from bench import feature_speed, pipeline_speed, train_throughput  # noqa: E402
from bench.side_by_side import format_ratio  # noqa: E402
from generate.model_sets import SD_TURBO  # noqa: E402

TOTAL_BUDGET_S = 600.0
PARTS = ("pipeline_768", "pipeline_512", "few_step", "train_throughput", "feature_extraction", "ladder")
# Seconds each part may start new work in. The pipelines come first: they are the figures most asked for; the ladder
# comes last, as compiling the UNet takes a minute or two and its time is the hardest to foresee.
BUDGETS = {"pipeline_768": 100.0, "pipeline_512": 60.0, "few_step": 45.0, "train_throughput": 60.0, "feature_extraction": 40.0, "ladder": 210.0}
DEFAULT_JSON = ROOT / "bench" / "results" / "gpu_figures.json"
DRY_JSON = ROOT / "runs" / "gpu_figures_dry.json"  # never over the real figures


@dataclass(frozen=True)
class Plan:
    """The sizes of every part: the real plan for a GPU, or the dry run's miniature of it (same parts, same calls)."""

    size: str = "real"  # model set of bench/pipeline_speed.py
    large: int = 768  # pixels of pipeline_768 and the ladder
    small: int = 512  # pixels of pipeline_512 and the few-step rows
    steps: int = 25
    few_steps: tuple[int, ...] = (1, 2, 4)
    repeats: int = 3  # alternated rounds of each comparison: GPU time is scarce, and a GPU is rarely shared
    ladder_height: int = 768
    ladder_steps: int = 25
    ladder_repeats: int = 1  # the ladder's rungs are far apart; one timed call after the warm-up tells them apart
    compile_unet: bool = True
    train: dict = field(default_factory=lambda: {"real_sizes": True, "batch_size": 8, "steps": 5, "repeats": 3, "warmup_steps": 2})
    # 64 clips keep one library call near 3-5 s on one core; the torch extractors take milliseconds
    features: dict = field(default_factory=lambda: {"batch": 64, "seconds": 6.0, "repeats": 5, "torch_calls": 5})


DRY_PLAN = Plan(size="tiny", large=32, small=16, steps=2, repeats=2, ladder_height=16, ladder_steps=1, compile_unet=False,
                train={"real_sizes": False, "batch_size": 4, "steps": 1, "repeats": 2, "warmup_steps": 1},
                features={"batch": 4, "seconds": 1.0, "repeats": 2, "torch_calls": 2})


def elapsed() -> float:
    return time.perf_counter() - STARTED


def say(message: str) -> None:
    print(f"[{elapsed():6.1f} s] {message}", flush=True)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_parts(plan: Plan, device: torch.device, dtype: torch.dtype, scale: float, only: tuple[str, ...] = PARTS) -> tuple[dict, dict]:
    """Every part in order, each under its budget: (the parts' records, the shared models' build info)."""
    total_deadline = STARTED + TOTAL_BUDGET_S * scale
    records, state = {}, {}

    def pipelines():
        if "pipes" not in state:
            say(f"building the {plan.size} models on {device} ({str(dtype).replace('torch.', '')})")
            ours, stock, info = pipeline_speed.build(plan.size, device, dtype)
            state.update(pipes=(ours, stock), build=info)
            say(f"built in {info['build_seconds']} s: {info['weights_gb']} GB of weights")
        return state["pipes"]

    def pipeline_part(height: int):
        def part(deadline: float) -> dict:
            ours, stock = pipelines()
            pipeline_speed.set_scheduler(ours, stock, real_models.sd21_scheduler())
            return pipeline_speed.compare(ours, stock, device, height=height, width=height, steps=plan.steps, repeats=plan.repeats,
                                          deadline=deadline, progress=True)
        return part

    def few_step(deadline: float) -> dict:
        ours, stock = pipelines()
        pipeline_speed.set_scheduler(ours, stock, pipeline_speed.sd_turbo_scheduler())
        rows = []
        for steps in plan.few_steps:
            if rows and time.perf_counter() > deadline:
                rows.append({"steps": steps, "skipped": "the time budget was spent"})
                continue
            rows.append(pipeline_speed.compare(ours, stock, device, height=plan.small, width=plan.small, steps=steps, guidance=SD_TURBO.guidance,
                                               repeats=plan.repeats, deadline=deadline, progress=True))
        return {"scheduler": "SD-Turbo (Euler, trailing timesteps)", "rows": rows}

    def train(deadline: float) -> dict:
        state.pop("pipes", None)  # the training step needs its own models (and room for AdamW's state)
        free_memory(device)
        return train_throughput.measure(**plan.train, device=device, deadline=deadline, progress=True)

    def features(deadline: float) -> dict:
        return feature_speed.measure(**plan.features, devices=["cpu"] + (["cuda"] if device.type == "cuda" else []), deadline=deadline)

    def ladder(deadline: float) -> dict:
        state.pop("pipes", None)
        free_memory(device)
        ours, _, info = pipeline_speed.build(plan.size, device, torch.float32)  # the ladder starts from fp32 and casts in place
        rungs = pipeline_speed.ladder(ours, device, height=plan.ladder_height, width=plan.ladder_height, steps=plan.ladder_steps,
                                      repeats=plan.ladder_repeats, compile_unet=plan.compile_unet, deadline=deadline)
        return {"build_seconds": info["build_seconds"], "rungs": rungs}

    work = {"pipeline_768": (pipeline_part(plan.large), f"audio → image vs text → image, {plan.large} px, {plan.steps} steps"),
            "pipeline_512": (pipeline_part(plan.small), f"audio → image vs text → image, {plan.small} px, {plan.steps} steps"),
            "few_step": (few_step, f"SD-Turbo's sampler, {plan.small} px, {', '.join(map(str, plan.few_steps))} steps, no guidance"),
            "train_throughput": (train, f"{plan.size}-size alignment step, cached targets vs text encoder every step"),
            "feature_extraction": (features, "library features vs batched torch features"),
            "ladder": (ladder, f"audio → image, {plan.ladder_height} px, {plan.ladder_steps} steps, one speed-up at a time")}
    for name in PARTS:
        budget = BUDGETS[name] * scale
        record = records[name] = {"budget_seconds": round(budget, 1)}
        if name not in only:
            record.update(status="skipped", reason="not asked for (--parts)")
            continue
        if time.perf_counter() > total_deadline:
            record.update(status="skipped", reason=f"the whole budget ({TOTAL_BUDGET_S * scale:.0f} s) was spent")
            say(f"{name}: skipped, the whole budget was spent")
            continue
        fn, what = work[name]
        say(f"{name}: {what} (budget {budget:.0f} s)")
        started = time.perf_counter()
        try:
            record.update(status="ok", figures=fn(min(started + budget, total_deadline)))
        except Exception as error:  # one part's failure must not cost the others their GPU time
            record.update(status="error", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=8))
            say(f"{name}: FAILED: {type(error).__name__}: {error}")
        record["seconds"] = round(time.perf_counter() - started, 3)  # a dry run's part can take milliseconds
    state.pop("pipes", None)
    free_memory(device)
    return records, state.get("build", {})


def _pipeline_rows(label: str, figures: dict) -> list[tuple[str, str, str, str]]:
    ratio = format_ratio(figures["time_ratio_audio_over_text"])
    rows = [(label, "audio → image", f"{figures['audio_to_image']['seconds']:.3f} s, {figures['audio_to_image']['peak_memory_gb']:.2f} GB",
             f"audio / text {ratio}"),
            ("", "text → image", f"{figures['text_to_image']['seconds']:.3f} s, {figures['text_to_image']['peak_memory_gb']:.2f} GB", "")]
    rows.append(("", "condition: audio | text", f"{figures['audio_condition']['seconds']:.4f} s | {figures['text_condition']['seconds']:.4f} s",
                 f"audio / text {format_ratio(figures['condition_ratio_audio_over_text'])}"))
    return rows


def table(result: dict) -> str:
    """The figures of every part, one line a row: part, row, median figures, the paired ratio and its spread."""
    meta, parts, plan = result["meta"], result["parts"], result["meta"]["plan"]
    rows: list[tuple[str, str, str, str]] = []
    for name, record in parts.items():
        if record["status"] != "ok":
            rows.append((name, record["status"], record.get("reason") or record.get("error", ""), ""))
            continue
        figures = record["figures"]
        if name.startswith("pipeline_"):
            rows += _pipeline_rows(f"{name} ({figures['steps']} steps)", figures)
        elif name == "few_step":
            for row in figures["rows"]:
                label = "few_step" if row is figures["rows"][0] else ""
                if "skipped" in row:
                    rows.append((label, f"{row['steps']} step(s)", "skipped: " + row["skipped"], ""))
                    continue
                for i, (_, what, figure, ratio) in enumerate(_pipeline_rows(label, row)[:2]):
                    rows.append((label if i == 0 else "", f"{row['steps']} step(s): {what}", figure, ratio))
        elif name == "train_throughput":
            for i, (mode, value) in enumerate(figures["samples_per_second"].items()):
                rows.append((name if i == 0 else "", mode, f"{value:.1f} samples/s, {figures['ms_per_step'][mode]:.1f} ms/step",
                             "" if i else f"cache speed-up {format_ratio(figures['cache_speedup'])}"))
        elif name == "feature_extraction":
            for i, (side, row) in enumerate((k, v) for k, v in figures.items() if isinstance(v, dict)):
                rows.append((name if i == 0 else "", side, f"{row['seconds']:.4f} s/batch of {figures['batch']}, {row['clips_per_second']:.1f} clips/s",
                             f"speed-up {format_ratio(row['speedup_over_library'], 1)}" if "speedup_over_library" in row else ""))
        elif name == "ladder":
            for i, rung in enumerate(figures["rungs"]):
                figure = ("skipped: " + rung["skipped"] if "skipped" in rung else
                          f"{rung['seconds']:.3f} s, {rung['peak_memory_gb']:.2f} GB (first call {rung['first_call_seconds']:.1f} s)")
                rows.append((f"ladder ({plan['ladder_height']} px, {plan['ladder_steps']} steps)" if i == 0 else "", rung["rung"], figure, ""))
    widths = [max(len(r[i]) for r in rows + [("part", "row", "median", "")]) for i in range(3)]
    memory = "CUDA peak allocated, all weights included" if meta["device"].startswith("cuda") else "peak RSS above the pre-call level"
    lines = [f"== {'DRY RUN (tiny models): ' if meta['dry_run'] else ''}{meta['gpu'] or meta['device']}, {meta['dtype']}, torch {meta['torch']}: "
             f"{meta['seconds']:.0f} s of a {meta['budget_seconds']:.0f} s budget; {meta['json']}",
             f"{'part':<{widths[0]}}  {'row':<{widths[1]}}  {'median (' + memory + ')':<{widths[2]}}  paired ratio: median (IQR, range; pairs)"]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)


def finite_numbers(value) -> bool:
    """Every number in a JSON value is finite (a NaN would mean a part measured nothing)."""
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu_figures.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU, every part in miniature: seconds; checks the machinery")
    parser.add_argument("--json", type=Path, default=None, help=f"where to write the figures (default {DEFAULT_JSON.relative_to(ROOT)}; "
                        f"with --dry-run {DRY_JSON.relative_to(ROOT)})")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole run; each part's budget scales with it "
                        "(default %(default)g)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                        help=f"run only these parts (the others are recorded as skipped): {', '.join(PARTS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry_run:
        plan, (device, dtype) = DRY_PLAN, (torch.device("cpu"), torch.float32)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here: these are GPU figures (add --dry-run to check the machinery on the CPU; "
                         "bench/pipeline_speed.py --sizes real times the real sizes on a CPU, slowly)")
        plan, (device, dtype) = Plan(), resolve_device_and_dtype("cuda", "auto")
    out = args.json or (DRY_JSON if args.dry_run else DEFAULT_JSON)
    scale = args.budget / TOTAL_BUDGET_S
    say(f"{'dry run: tiny models on the CPU' if args.dry_run else torch.cuda.get_device_name(device)}; budget {args.budget:.0f} s; "
        f"figures to {out}")

    records, build = run_parts(plan, device, dtype, scale, tuple(args.parts))
    result = {"meta": {"dry_run": args.dry_run, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                       "dtype": str(dtype).replace("torch.", ""), "torch": torch.__version__, "diffusers": diffusers.__version__,
                       "transformers": transformers.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                       "command": shlex.join(["python", "bench/gpu_figures.py", *(sys.argv[1:] if argv is None else argv)]),
                       "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "budget_seconds": args.budget,
                       "seconds": round(elapsed(), 1), "json": str(out), "plan": asdict(plan), "models": build},
              "parts": records}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result), flush=True)
    failed = [name for name, record in records.items() if record["status"] == "error"]
    if failed or not finite_numbers(result):
        print(f"failed: {', '.join(failed) or 'a figure is not a finite number'} (see {out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
