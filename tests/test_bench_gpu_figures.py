"""bench/gpu_figures.py end to end in its dry mode (tiny models, CPU), and the side-by-side timing it is built on.

The dry run takes the code path of the GPU run, so a GPU, when one comes, gets figures instead of a traceback.
The figures themselves mean nothing here: only that every part produced them.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.side_by_side import Rounds, alternate, format_ratio

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["pipeline_768", "pipeline_512", "few_step", "train_throughput", "feature_extraction", "ladder"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_ratio(summary: dict, pairs: int) -> None:
    assert summary["pairs"] == pairs
    assert positive(summary["median"])
    assert summary["min"] <= summary["q1"] <= summary["median"] <= summary["q3"] <= summary["max"]


def check_pipeline(figures: dict, steps: int, pairs: int) -> None:
    assert figures["steps"] == steps and figures["rounds"] == pairs
    for side in ("audio_to_image", "text_to_image", "audio_condition", "text_condition"):
        assert positive(figures[side]["seconds"]), side
        assert len(figures[side]["rounds_seconds"]) == pairs
        assert math.isfinite(figures[side]["peak_memory_gb"]) and figures[side]["peak_memory_gb"] >= 0, side
    check_ratio(figures["time_ratio_audio_over_text"], pairs)
    check_ratio(figures["condition_ratio_audio_over_text"], pairs)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_figures") / "figures.json"
    done = subprocess.run([sys.executable, "bench/gpu_figures.py", "--dry-run", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_dry_run_writes_every_part_with_figures(dry_run):
    result, _ = dry_run
    assert result["meta"]["dry_run"] is True and result["meta"]["device"] == "cpu"
    parts = result["parts"]
    assert list(parts) == PARTS
    for name, record in parts.items():
        assert record["status"] == "ok", (name, record.get("reason"), record.get("error"), record.get("traceback"))
        assert positive(record["seconds"]) and positive(record["budget_seconds"])

    pairs = result["meta"]["plan"]["repeats"]
    check_pipeline(parts["pipeline_768"]["figures"], 2, pairs)
    check_pipeline(parts["pipeline_512"]["figures"], 2, pairs)
    assert parts["pipeline_768"]["figures"]["height"] > parts["pipeline_512"]["figures"]["height"]

    rows = parts["few_step"]["figures"]["rows"]
    assert [row["steps"] for row in rows] == [1, 2, 4]
    for row in rows:
        assert row["guidance"] == 0
        check_pipeline(row, row["steps"], pairs)

    train = parts["train_throughput"]["figures"]
    assert set(train["samples_per_second"]) == {"cached targets", "text encoder every step"}
    assert all(positive(v) for v in train["samples_per_second"].values())
    check_ratio(train["cache_speedup"], train["rounds"])

    features = parts["feature_extraction"]["figures"]
    assert positive(features["library"]["clips_per_second"]) and positive(features["torch cpu"]["clips_per_second"])
    check_ratio(features["torch cpu"]["speedup_over_library"], features["rounds"])
    assert features["torch cpu"]["max_abs_difference"] < 0.05  # the same features as the library's, within float32 rounding

    rungs = {rung["rung"]: rung for rung in parts["ladder"]["figures"]["rungs"]}
    assert list(rungs) == ["fp32, classic attention", "+ bfloat16", "+ SDPA attention", "+ torch.compile(unet)"]  # offload: CUDA only
    for name in list(rungs)[:3]:
        assert positive(rungs[name]["seconds"]) and positive(rungs[name]["first_call_seconds"]), name
    assert "skipped" in rungs["+ torch.compile(unet)"]  # the dry run does not compile


def test_dry_run_prints_one_table_of_every_part(dry_run):
    _, stdout = dry_run
    table = stdout[stdout.index("== DRY RUN"):]
    for name in PARTS:
        assert name in table
    assert "audio / text" in table and "cache speed-up" in table and "clips/s" in table


def test_alternate_reverses_the_order_every_round():
    calls = []
    rounds = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert rounds.rounds == 3 and not rounds.stopped_early
    assert all(len(v) == 3 and all(s >= 0 for s in v) for v in rounds.seconds.values())


def test_alternate_starts_no_round_after_its_deadline():
    calls = []
    rounds = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=5, warmup=0,
                       deadline=time.perf_counter() - 1)
    assert calls == ["a", "b"] and rounds.rounds == 1 and rounds.stopped_early  # the first round always runs


def test_paired_ratios_summarise_round_by_round():
    rounds = Rounds({"slow": [2.0, 4.0, 6.0, 30.0], "fast": [1.0, 2.0, 2.0, 1.0]})
    summary = rounds.ratio("slow", "fast")  # ratios 2, 2, 3, 30: the one disturbed round moves the median little
    assert summary == {"median": 2.5, "q1": 2.0, "q3": 9.75, "min": 2.0, "max": 30.0, "pairs": 4}
    assert format_ratio(summary) == "2.50 (IQR 2.00-9.75, range 2.00-30.00; 4 pairs)"
    assert rounds.side("fast", per=2) == {"seconds": 0.75, "rounds_seconds": [0.5, 1.0, 1.0, 0.5]}


def test_peak_memory_of_each_call_is_measured():
    def allocate():
        block = np.ones(200 * 2**20 // 8)  # 200 MB, every page touched
        time.sleep(0.05)  # long enough for the sampler to see it
        del block

    rounds = alternate({"allocate": allocate, "nothing": lambda: time.sleep(0.05)}, repeats=2, warmup=0, memory=True)
    assert all(peak > 0.15 for peak in rounds.peak_gb["allocate"])
    assert all(peak < 0.05 for peak in rounds.peak_gb["nothing"])


def test_ladder_skips_the_rungs_its_budget_has_no_room_for():
    import torch

    from bench import pipeline_speed

    ours, _, _ = pipeline_speed.build("tiny", torch.device("cpu"), torch.float32)
    rungs = pipeline_speed.ladder(ours, torch.device("cpu"), height=16, width=16, steps=1, repeats=1, deadline=time.perf_counter() - 1)
    assert [rung["rung"] for rung in rungs] == ["fp32, classic attention", "+ bfloat16", "+ SDPA attention", "+ torch.compile(unet)"]
    assert all(rung["skipped"] == "the time budget was spent" for rung in rungs[:3])
    assert rungs[3]["skipped"] == f"0 s of the time budget left, {pipeline_speed.COMPILE_SECONDS:.0f} s needed"


def test_a_failing_part_is_recorded_and_fails_the_run(tmp_path, monkeypatch, capsys):
    from bench import gpu_figures, train_throughput

    def broken(**kwargs):
        raise RuntimeError("no training today")

    monkeypatch.setattr(train_throughput, "measure", broken)
    out = tmp_path / "figures.json"
    assert gpu_figures.main(["--dry-run", "--parts", "train_throughput", "feature_extraction", "--json", str(out)]) == 1
    parts = json.loads(out.read_text())["parts"]
    assert parts["train_throughput"]["status"] == "error" and "no training today" in parts["train_throughput"]["error"]
    assert parts["feature_extraction"]["status"] == "ok"  # the part after it still ran
    assert parts["pipeline_768"]["status"] == "skipped"
    assert "failed: train_throughput" in capsys.readouterr().err
