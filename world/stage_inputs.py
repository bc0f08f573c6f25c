"""The stage outputs committed in models/world_stages, so that a rebuild goes on from them on a fresh machine.

A rebuild from scratch takes more than a session's 3 hours on 2 cores, and a fresh machine has no runs/. So what the
later stages read of some finished stages (their weights in float16, tokenizers and schedulers, their metrics) is
committed, and `python -m world.rebuild --from-committed` runs only the stages after them:

    python -m world.stage_inputs words sound_vae sound_unet sound_ears   # commit these finished runs of runs/world
    python -m world.stage_inputs --list                                   # what is committed, and how big

`restore` puts a committed stage back into a runs folder that has no run of it, so every later stage (and
world.assemble) reads <runs>/<stage> whether this machine trained it or not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

STAGE_INPUTS = Path(__file__).resolve().parent.parent / "models" / "world_stages"
# What the later stages read of each committable stage's folder; the rest (checkpoints, logs, the VAE's latent cache)
# stays behind. The speech world's four come first: the sound stages start from them.
COMMITTED_PARTS = {
    "clip": ("clip",),
    "vae": ("vae",),
    "sharpen": ("unet",),
    "polish": ("final",),
    "words": ("clip", "text_encoder", "tokenizer", "metrics.json"),  # the ears' targets, the scorer's CLIP, the pipeline's text tower
    "sound_vae": ("vae", "metrics.json"),
    "sound_unet": ("unet", "scheduler", "metrics.json"),
    "sound_ears": ("final", "metrics.json", "held_out.json", "args.json"),  # the first sound cycle of the ears (sound_mix starts from it)
    "sound_mix": ("final", "metrics.json", "held_out.json", "args.json"),  # the second (sound_more starts from it)
    "sound_more": ("final", "metrics.json", "held_out.json", "args.json"),  # the third, with more sources (sound_expert starts from it)
    "speech_expert": ("final", "metrics.json", "held_out.json", "args.json"),  # the shipped ears' experts (world.route_ears)
    "sound_expert": ("final", "metrics.json", "held_out.json", "args.json"),
    "sound_spectrum": ("final", "metrics.json", "held_out.json", "args.json"),  # the second sound expert (fixed mel statistics)
    "speech_clap": ("clap", "metrics.json"),  # the speech world's scorer: the clap stage starts from it
    "clap": ("clap", "metrics.json"),  # the world's scorer and the cascade's caption namer
}
RESTORED = "restored_from_commit.json"  # written into a run folder that `restore` filled, so reports can say so
RECORD = "stage.json"  # in a committed folder: how long the stage took where it ran (world.rebuild's timings)


def committed(stage: str) -> bool:
    return all((STAGE_INPUTS / stage / part).exists() for part in COMMITTED_PARTS.get(stage, ("-",)))


def to_float16(path: Path) -> None:
    """Rewrite a safetensors file with its float tensors in float16 (the stages load them back as float32)."""
    tensors = load_file(path)
    save_file({k: v.half().contiguous() if v.is_floating_point() else v.contiguous() for k, v in tensors.items()}, path,
              metadata={"format": "pt"})


def commit(stage: str, runs: Path, into: Path = STAGE_INPUTS) -> int:
    """Copy what later stages read of <runs>/<stage> into <into>/<stage> (replacing an older copy), weights in float16;
    the bytes written."""
    if stage not in COMMITTED_PARTS:
        raise SystemExit(f"{stage} is not a stage whose output can be committed; choose from {', '.join(COMMITTED_PARTS)}")
    missing = [part for part in COMMITTED_PARTS[stage] if not (runs / stage / part).exists()]
    if missing:
        raise SystemExit(f"{runs / stage} lacks {', '.join(missing)}: finish the {stage} stage first (python -m world.rebuild)")
    target = into / stage
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for part in COMMITTED_PARTS[stage]:
        source = runs / stage / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("*.bin", "*.pt", "checkpoint*"))
        else:
            shutil.copy2(source, target / part)
    for weights in target.rglob("*.safetensors"):
        to_float16(weights)
    (target / RECORD).write_text(json.dumps({"stage": stage, "seconds": recorded_seconds(stage, runs)}) + "\n")
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def recorded_seconds(stage: str, runs: Path) -> float | None:
    """The stage's time as the rebuild that ran it recorded it (with killed attempts it resumed from), else its own
    stage.json's or its metrics'."""
    from world.rebuild import stage_seconds  # world.rebuild imports this module

    timings = runs / "timings.json"
    if timings.exists():
        recorded = json.loads(timings.read_text())
        if stage in recorded.get("stages", {}):
            return round(stage_seconds(recorded, stage), 1)
    return seconds_recorded(runs / stage / RECORD, runs / stage / "metrics.json")  # a stage run by its own command


def seconds_recorded(*records: Path) -> float | None:
    """The first "seconds" number among these JSON records (a stage's stage.json, metrics.json, marker) that exist."""
    for record in records:
        if record.suffix == ".json" and record.exists():
            seconds = json.loads(record.read_text() or "{}").get("seconds")
            if isinstance(seconds, (int, float)):
                return float(seconds)
    return None


def restore(stage: str, runs: Path) -> bool:
    """Copy the committed <stage> into <runs>/<stage> where this machine has no finished run of it (an unfinished one
    is moved to <stage>.unfinished); True if it did."""
    if not committed(stage) or all((runs / stage / part).exists() for part in COMMITTED_PARTS[stage]):
        return False
    if (runs / stage).exists():
        shutil.rmtree(runs / f"{stage}.unfinished", ignore_errors=True)
        (runs / stage).rename(runs / f"{stage}.unfinished")
    shutil.copytree(STAGE_INPUTS / stage, runs / stage)
    record = STAGE_INPUTS / stage / RECORD
    (runs / stage / RESTORED).write_text(json.dumps({"from": str(STAGE_INPUTS / stage), **(json.loads(record.read_text()) if record.exists() else {})}) + "\n")
    return True


def stage_input(runs: Path, path: str) -> Path:
    """<runs>/<path>, or the committed copy where this machine has no such run (a fresh machine going on with
    `python -m world.rebuild --from words`)."""
    local = runs / path
    return local if local.exists() or not (STAGE_INPUTS / path).exists() else STAGE_INPUTS / path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*", metavar="STAGE",
                        help=f"finished stages to commit: {', '.join(COMMITTED_PARTS)}")
    parser.add_argument("--runs", type=Path, default=Path("runs/world"), help="where the finished stages are (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="print what is committed and its size")
    args = parser.parse_args(argv)
    if not args.stages and not args.list:
        parser.error("name the stages to commit, or --list")
    for stage in args.stages:
        size = commit(stage, args.runs)
        print(f"{stage}: {args.runs / stage} → {STAGE_INPUTS / stage} ({size / 2**20:.1f} MB, float16)", flush=True)
    if args.list:
        for stage in COMMITTED_PARTS:
            size = sum(f.stat().st_size for f in (STAGE_INPUTS / stage).rglob("*") if f.is_file()) if committed(stage) else 0
            print(f"{stage:12s} {'committed' if committed(stage) else 'not committed':14s} {size / 2**20:6.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
