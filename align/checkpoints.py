"""Checkpoints of align.train: written whole or not at all, found again, and the logs trimmed back to them.

A checkpoint is accelerate's state (weights, optimizer, scheduler, RNG) + trainer_state.json (step, epoch, batch,
skipped items) + with a stream, each process's position in it (stream_state-<process>.json). It is written to a
.tmp folder and renamed, so a kill never leaves half a checkpoint; a resume drops what the killed run logged after it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

logger = logging.getLogger("align.train")

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"


def checkpoint_folders(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a save killed half-way leaves a .tmp folder, never listed)."""
    found = [p for p in root.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / TRAINER_STATE).exists() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def stream_state_file(checkpoint: Path, process_index: int) -> Path:
    return checkpoint / f"stream_state-{process_index}.json"


def save_checkpoint(accelerator, root: Path, state: dict, total_limit: int | None, stream_state: dict | None = None) -> Path:
    """accelerate state + trainer_state.json, written to a .tmp folder and renamed, so a kill never leaves half a checkpoint.

    `stream_state`: this process's streaming position ({DataLoader worker: state}), one file per process.
    """
    final = root / f"{CHECKPOINT_PREFIX}{state['global_step']}"
    tmp = root / f"{final.name}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if stream_state is not None:
        stream_state_file(tmp, accelerator.process_index).write_text(json.dumps(stream_state))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_folders(root)[: -total_limit] if total_limit else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def checkpoint_to_resume(resume_from: str | None, root: Path) -> Path | None:
    """The checkpoint --resume-from-checkpoint names: 'latest' (None when there is none yet), a folder, or None."""
    if resume_from == "latest":
        found = checkpoint_folders(root)
        if not found:
            logger.info("--resume-from-checkpoint latest: no checkpoint in %s yet, starting from step 0", root)
        return found[-1] if found else None
    if resume_from:
        checkpoint = Path(resume_from)
        if not (checkpoint / TRAINER_STATE).exists():
            raise FileNotFoundError(f"--resume-from-checkpoint {checkpoint}: not a complete checkpoint (no {TRAINER_STATE}); pick one under {root}")
        return checkpoint
    if checkpoint_folders(root):
        logger.warning("starting from step 0 although %s holds checkpoints of an earlier run (add --resume-from-checkpoint latest to continue it)", root)
    return None


def logged_step(line: str) -> float:
    """The step of a log.jsonl line; infinity for a line a kill cut short, so a resume drops it."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError):
        return math.inf


def keep_lines_until(path: Path | None, step: int | None) -> None:
    """Drop the lines of a log (log.jsonl, samples-rank<r>.jsonl) after `step` (all of them for a fresh start, None)."""
    if path is None or not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if step is not None and logged_step(line) <= step]
    path.write_text("".join(line + "\n" for line in kept))
