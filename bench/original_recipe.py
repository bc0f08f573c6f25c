"""The original's training recipe beside align.train: the same encoder, data and wall time; speed and what each learns.

    python bench/original_recipe.py --recipes original &     # two processes, one thread each, side by side:
    python bench/original_recipe.py --recipes ours           # 5, 15 and 30 min of training each (~55 min)
    python bench/original_recipe.py --table                  # bench/results/original_recipe.json as the README's table
    python bench/original_recipe.py --minutes 0.3 --results /tmp/r.json   # a quick check that both run
    python bench/original_recipe.py --minutes 5 --recipes ours --ours-args "--mse-weight 1" --results /tmp/a.json  # an ablation

Data: the world's plain spoken captions (data/world from `python -m world.build`, or `python -m world.rebuild`; its
sound recordings and hard speech are left out, as hard links under --out/data): the training voices to train on,
the held-out voices (test/) to measure. Targets: the world's text tower as shipped (models/world/pipeline/
text_encoder). Both runs start from the same initial encoder of the world's size (w2v-BERT hidden 144, 3 conformer
layers, the 2-layer adapter: world.train_audio.make_audio_encoder) and train with AdamW at the same learning rate and
schedule (1e-3, cosine, 5 % warmup, weight decay 0.01, gradient clipping 1), each for --minutes of wall time (its
number of steps is set from a short timed trial so that its schedule ends there; the original also stops at 1.1x
the budget). Run the two recipes as two processes at once, one torch thread each, so that whatever else loads the
machine loads both.

The original (the public seed notebook, ../shared/DESIGN.md), as it trains:
- HF `Trainer` over a `datasets.Dataset` whose `labels` column holds each clip's caption states, computed before
  training by `Dataset.map`;
- micro-batches of 8 clips, each clip's first window; features by the library `SeamlessM4TFeatureExtractor`, one clip
  at a time, in the data collator;
- `Contrastive_loss`: one way (audio → caption) over the micro-batch's 8 clips (7 negatives); the similarity of two
  sequences is the per-token cosine averaged over every position, BOS and the caption's padding included; no
  magnitude term; two clips of the same caption count as negatives of each other;
- gradient accumulation 16: an optimizer step sees 128 clips, but every softmax only 8;
- a 47-token window: that is SD 2.1's 77 positions cut short. The world's text tower has 39 positions, so here both
  runs use its 38-token window (`--window-tokens` sets another for both).
Ours: `align.train` with its defaults, 48 clips a step: whole sequences contrasted both ways over all 48, shared
captions masked, BOS left out, an MSE term of weight 0.1, features batched in torch (`--ours-args` adds to it).

Each run adds a row to --results (bench/results/original_recipe.json by default; a rerun of the same budget and
recipe replaces its row): clips/s, optimizer steps, clips seen, minutes trained; on the held-out voices, caption
R@1 and R@5 over the 72 spoken captions, the top caption's colour / shape / position all right, and the per-token
cosine of each clip's states to its own caption's (world.train_audio.evaluate_folders, the figure the original
reported); and the command.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

from hearing.audio import SAMPLE_RATE, fit_to_window, load_audio  # noqa: E402
from align.data import read_metadata  # noqa: E402
from hearing.files import write_json_atomic  # noqa: E402

ORIGINAL_MICRO_BATCH = 8
ORIGINAL_ACCUMULATION = 16
OUR_BATCH = 48  # world.rebuild's audio stage
LEARNING_RATE = 1e-3
TEMPERATURE = 0.15  # align.train's default, for both
ORIGINAL, OURS = "original", "ours"
RESULTS = Path(__file__).resolve().parent / "results" / "original_recipe.json"


def original_contrastive_loss(audio: torch.Tensor, text: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The original's loss: audio → caption cross-entropy over the batch, each pair's similarity the per-token cosine
    averaged over every position (BOS and padding included); no caption → audio term, no magnitude term."""
    a, y = F.normalize(audio.float(), dim=-1), F.normalize(text.float(), dim=-1)
    logits = torch.einsum("itd,jtd->ij", a, y) / a.shape[1] / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=logits.device))


class OriginalObjective(nn.Module):
    """What the original hands to `Trainer`: the encoder, returning its loss against the `labels` column."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_features, attention_mask, labels):
        audio = self.encoder(input_features=input_features, attention_mask=attention_mask).last_hidden_state
        return {"loss": original_contrastive_loss(audio, labels[:, : audio.shape[1]])}


class OriginalCollator:
    """Rows (file, labels) → a micro-batch: each clip decoded, its first window, library features one clip at a time."""

    def __init__(self, extractor, window_samples: int):
        self.extractor, self.window_samples = extractor, window_samples

    def __call__(self, rows: list[dict]) -> dict:
        waves = [fit_to_window(load_audio(row["file"]), self.window_samples, "start") for row in rows]
        features = self.extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        return {"input_features": features["input_features"], "attention_mask": features["attention_mask"],
                "labels": torch.tensor([row["labels"] for row in rows], dtype=torch.float32)}


def initial_encoder(out: Path, text_dir: Path, tokenizer_dir: Path, window_tokens: int) -> Path:
    """The one starting point of both runs, saved as align.train reads it."""
    from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor

    from hearing.text_states import encode_captions
    from world.train_audio import make_audio_encoder

    folder = out / "init"
    if not (folder / "model.safetensors").exists():
        text_encoder = CLIPTextModel.from_pretrained(text_dir, use_safetensors=True, dtype=torch.float32).eval()
        empty = encode_captions([""], text_encoder, CLIPTokenizer.from_pretrained(tokenizer_dir))[0]
        make_audio_encoder(empty, seed=0, hidden=144, layers=3, num_audio_tokens=window_tokens).save_pretrained(folder)
        SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


def train_original(args, init: Path, out: Path, max_steps: int, seconds: float | None) -> dict:
    """The original's recipe for `max_steps` optimizer steps (stopping early at `seconds`); returns its speed and final/."""
    from datasets import Dataset
    from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor, Trainer, TrainerCallback, TrainingArguments

    from hearing.encoder import load_audio_encoder
    from hearing.text_states import encode_captions

    class StopAtDeadline(TrainerCallback):
        def __init__(self):
            self.deadline = None if seconds is None else time.perf_counter() + seconds

        def on_step_end(self, _args, _state, control, **_):
            if self.deadline is not None and time.perf_counter() > self.deadline:
                control.should_training_stop = True

    started = time.perf_counter()
    train_dir = args.data / "train"
    rows = read_metadata(train_dir)
    rows = rows[: args.max_train_clips] if args.max_train_clips else rows
    captions = sorted({row["caption"] for row in rows})
    text_encoder = CLIPTextModel.from_pretrained(args.text_encoder, use_safetensors=True, dtype=torch.float32).eval()
    states = encode_captions(captions, text_encoder, CLIPTokenizer.from_pretrained(args.tokenizer))
    index = {caption: i for i, caption in enumerate(captions)}
    dataset = Dataset.from_dict({"file": [str(train_dir / row["file_name"]) for row in rows], "caption": [row["caption"] for row in rows]})
    dataset = dataset.map(lambda batch: {"labels": states[[index[c] for c in batch["caption"]]].tolist()}, batched=True, batch_size=256)
    prepared = time.perf_counter() - started

    encoder = load_audio_encoder(init, dtype=torch.float32)
    trainer = Trainer(
        model=OriginalObjective(encoder),
        args=TrainingArguments(
            output_dir=str(out / "trainer"), per_device_train_batch_size=ORIGINAL_MICRO_BATCH,
            gradient_accumulation_steps=ORIGINAL_ACCUMULATION, learning_rate=LEARNING_RATE, lr_scheduler_type="cosine",
            warmup_steps=max(max_steps // 20, 1), weight_decay=0.01, max_grad_norm=1.0, max_steps=max_steps, logging_steps=10,
            save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False, seed=0,
            disable_tqdm=True,
        ),
        train_dataset=dataset,
        data_collator=OriginalCollator(SeamlessM4TFeatureExtractor.from_pretrained(init), encoder.window_samples),
        callbacks=[StopAtDeadline()],
    )
    clock = time.perf_counter()
    result = trainer.train()
    seconds_trained = time.perf_counter() - clock
    steps = result.global_step
    encoder.save_pretrained(out / "final")
    SeamlessM4TFeatureExtractor.from_pretrained(init).save_pretrained(out / "final")
    clips = steps * ORIGINAL_MICRO_BATCH * ORIGINAL_ACCUMULATION
    return {"final": out / "final", "steps": steps, "clips": clips, "seconds": seconds_trained, "samples_per_second": clips / seconds_trained,
            "prepare_seconds": prepared}


def train_ours(args, init: Path, out: Path, max_steps: int) -> dict:
    """align.train with its own defaults, 48 clips a step (unless --ours-args says otherwise), for `max_steps` steps."""
    from align import train as align_train

    argv = ["--data-dir", str(args.data), "--audio-model", str(init), "--text-encoder", str(args.text_encoder),
            "--tokenizer", str(args.tokenizer), "--target-cache-dir", str(out / "targets"), "--output-dir", str(out),
            "--train-batch-size", str(OUR_BATCH), "--max-train-steps", str(max_steps), "--learning-rate", str(LEARNING_RATE),
            "--lr-warmup-steps", str(max(max_steps // 20, 1)), "--weight-decay", "0.01", "--num-audio-tokens", str(args.window_tokens),
            "--num-workers", "0", "--eval-steps", str(10**9), "--max-eval-items", "8", "--checkpointing-steps", "0", "--logging-steps", "5",
            "--cpu", "--seed", "0", *args.extra]
    clock = time.perf_counter()
    result = align_train.main(argv)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    seconds = time.perf_counter() - clock
    speeds = [r["samples_per_second"] for r in log]
    batch = json.loads((out / "args.json").read_text())["train_batch_size"]
    return {"final": Path(result["final_dir"]), "steps": max_steps, "clips": max_steps * batch, "seconds": seconds, "batch": batch,
            "samples_per_second": sum(speeds) / len(speeds) if speeds else float("nan")}


def speech_only_data(world: Path, out: Path) -> Path:
    """An audiofolder of the world's plain spoken captions (its training voices; no sound recordings, no hard speech)
    and its held-out voices, as hard links: the data both recipes train on."""
    data = out / "data"
    for split, keep in (("train", lambda row: "sound" not in row and "hard" not in row), ("test", lambda row: True)):
        folder = data / split
        if (folder / "metadata.jsonl").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rows = [row for row in read_metadata(world / "audio" / split) if keep(row)]
        for row in rows:
            target = folder / row["file_name"]
            if not target.exists():
                os.link(world / "audio" / split / row["file_name"], target)
        (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data


def record(minutes: float, recipe: str, run: dict, held_out: dict, threads: int, command: str) -> dict:
    """One row of bench/results/original_recipe.json."""
    return {"minutes": minutes, "recipe": recipe, "clips_per_second": round(run["samples_per_second"], 1), "steps": run["steps"],
            "clips": run["clips"], "training_minutes": round(run["seconds"] / 60, 2), "R@1": round(held_out["R@1"], 4),
            "R@5": round(held_out["R@5"], 4), "all_three_right": round(held_out["all"], 4), "per_token_cosine": held_out["cosine"],
            "held_out_clips": held_out["clips"], "threads": threads, "command": command, "date": time.strftime("%Y-%m-%d")}


def save_record(path: Path, row: dict) -> None:
    """Add `row` to the results file, replacing an earlier run of the same budget and recipe; safe for two processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(path.read_text()) if path.exists() else []
        rows = [r for r in rows if (r["minutes"], r["recipe"]) != (row["minutes"], row["recipe"])] + [row]
        rows.sort(key=lambda r: (r["minutes"], r["recipe"] != ORIGINAL, r["recipe"]))
        write_json_atomic(path, rows)  # a stop mid-write leaves the old file, never half of one


def results_table(rows: list[dict], recipes: tuple[str, ...] = (ORIGINAL, OURS)) -> str:
    """The README's table: each budget, the original beside ours, the better R@1 and cosine in bold."""
    lines = ["| budget (min) | recipe | trained (min) | clips/s | optimizer steps | held-out R@1 | R@5 | all three right | per-token cosine |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for minutes in sorted({r["minutes"] for r in rows}):
        group = [r for r in rows if r["minutes"] == minutes and r["recipe"] in recipes]
        best = {key: max(r[key] for r in group) for key in ("R@1", "per_token_cosine")}
        for r in sorted(group, key=lambda r: recipes.index(r["recipe"])):
            r_at_1, cosine = f"{r['R@1']:.3f}", f"{r['per_token_cosine']:.3f}"
            if len(group) > 1:
                r_at_1 = f"**{r_at_1}**" if r["R@1"] == best["R@1"] else r_at_1
                cosine = f"**{cosine}**" if r["per_token_cosine"] == best["per_token_cosine"] else cosine
            lines.append(f"| {minutes:g} | {r['recipe']} | {r['training_minutes']:.1f} | {r['clips_per_second']:.1f} | {r['steps']} | {r_at_1} | {r['R@5']:.3f} | "
                         f"{100 * r['all_three_right']:.1f} % | {cosine} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world (python -m world.build)")
    parser.add_argument("--models", type=Path, default=Path("models/world"), help="the shipped world: its text tower gives the targets")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_original_recipe"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 15.0, 30.0], help="wall-time budgets of training, each run for every recipe")
    parser.add_argument("--recipes", nargs="+", choices=[ORIGINAL, OURS], default=[ORIGINAL, OURS],
                        help="which recipes to run (two processes, one each with --threads 1, run them side by side)")
    parser.add_argument("--ours-args", default="", help="further align.train arguments for ours, e.g. '--mse-weight 0' (an ablation)")
    parser.add_argument("--label", default=None, help="ours' name in the results (default 'ours', or 'ours <ours-args>' with --ours-args)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file each run's figures are added to")
    parser.add_argument("--table", action="store_true", help="print the results file as the README's table, train nothing")
    parser.add_argument("--window-tokens", type=int, default=None, help="the audio window in tokens, both recipes (default: the world's 38)")
    parser.add_argument("--max-train-clips", type=int, default=0, help="train on the first K clips only (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    args = parser.parse_args(argv)
    if args.table:
        if not args.results.is_file():
            raise SystemExit(f"{args.results}: no results yet; run python bench/original_recipe.py first")
        print(results_table(json.loads(args.results.read_text())))
        return []
    from world.settings import NUM_AUDIO_TOKENS
    from world.train_audio import evaluate_folders

    args.window_tokens = args.window_tokens or NUM_AUDIO_TOKENS
    args.text_encoder, args.tokenizer = args.models / "pipeline" / "text_encoder", args.models / "pipeline" / "tokenizer"
    if not (args.world / "audio" / "train" / "metadata.jsonl").is_file():
        raise SystemExit(f"{args.world}/audio/train: no world data; build it with `python -m world.build --out {args.world}`")
    if not (args.text_encoder / "config.json").is_file():
        raise SystemExit(f"{args.text_encoder}: no text tower; the shipped models/world has one (git checkout models/world)")
    if any(m <= 0 for m in args.minutes):
        raise SystemExit(f"--minutes {args.minutes}: every budget must be above 0")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.data = speech_only_data(args.world, args.out)
    args.extra = shlex.split(args.ours_args)
    our_name = args.label or (f"{OURS} {args.ours_args}" if args.ours_args else OURS)
    command = "python bench/original_recipe.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    init = initial_encoder(args.out, args.text_encoder, args.tokenizer, args.window_tokens)
    tag = our_name.replace(" ", "_").replace("-", "")

    # a short timed trial of each sets its number of steps, so that its cosine schedule ends when the time does
    speed = {}
    if ORIGINAL in args.recipes:
        trial = train_original(args, init, args.out / "trial_original", 2, None)
        speed[ORIGINAL] = trial["seconds"] / trial["steps"]
    if OURS in args.recipes:
        trial = train_ours(args, init, args.out / f"trial_{tag}", 8)
        speed[OURS] = trial["batch"] / trial["samples_per_second"]
    rows = []
    for minutes in args.minutes:
        budget = minutes * 60
        for recipe in args.recipes:
            steps = max(1, int(budget / speed[recipe]))
            print(f"{minutes:g} min, {recipe}: {steps} steps", flush=True)
            if recipe == ORIGINAL:
                run, name = train_original(args, init, args.out / f"original_{minutes:g}", steps, budget * 1.1), ORIGINAL
            else:
                run, name = train_ours(args, init, args.out / f"{tag}_{minutes:g}", steps), our_name
            held_out = evaluate_folders(run["final"], args.data, args.text_encoder, args.tokenizer, parts=("test",), spoken_only=True)["test"]
            rows.append(record(minutes, name, run, held_out, args.threads, command))
            save_record(args.results, rows[-1])
            print(results_table(rows, tuple(dict.fromkeys(r["recipe"] for r in rows))), flush=True)
    return rows


if __name__ == "__main__":
    main()
