"""The original's training recipe beside align.train: the same encoder, data and wall time; speed and what each learns.

    python bench/original_recipe.py                      # 5 min of training each + evaluation: ~13 min on 2 CPU cores
    python bench/original_recipe.py --minutes 0.3        # a quick check that both run (figures mean nothing)

Data: the world's spoken captions (data/world from `python -m world.build`, or `python -m world.rebuild`): its
training voices to train on, its held-out voices (test/) to measure. Targets: the world's text tower as shipped
(models/world/pipeline/text_encoder). Both runs start from the same initial encoder of the world's size (w2v-BERT
hidden 144, 3 conformer layers, the 2-layer adapter: world.train_audio.make_audio_encoder), train with AdamW at the
same learning rate and schedule (1e-3, cosine, 5 % warmup, weight decay 0.01, gradient clipping 1), one after the
other on the same threads, each for --minutes of wall time (its number of steps is set from a short timed trial so
that its schedule ends there).

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
Ours: `align.train` as world.rebuild's audio stage runs it: 48 clips a step, both directions over all 48, shared
captions masked, BOS left out, an MSE term, frequency warping and masks, features batched in torch.

Printed, side by side: training samples/s, optimizer steps and clips seen in the time; on the held-out voices,
caption R@1 over the 72 captions, the top caption's colour / shape / position all right, and the per-token cosine
of each clip's states to its own caption's (world.train_audio.evaluate_folders, the figure the original reported).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

from hearing.audio import SAMPLE_RATE, fit_to_window, load_audio  # noqa: E402
from align.data import read_metadata  # noqa: E402

ORIGINAL_MICRO_BATCH = 8
ORIGINAL_ACCUMULATION = 16
OUR_BATCH = 48  # world.rebuild's audio stage
LEARNING_RATE = 1e-3
TEMPERATURE = 0.15  # align.train's default, for both


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
    train_dir = args.world / "audio" / "train"
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
    """align.train with world.rebuild's audio-stage settings for `max_steps` steps of 48 clips."""
    from align import train as align_train

    argv = ["--data-dir", str(args.world / "audio"), "--audio-model", str(init), "--text-encoder", str(args.text_encoder),
            "--tokenizer", str(args.tokenizer), "--target-cache-dir", str(out / "targets"), "--output-dir", str(out),
            "--train-batch-size", str(OUR_BATCH), "--max-train-steps", str(max_steps), "--learning-rate", str(LEARNING_RATE),
            "--lr-warmup-steps", str(max(max_steps // 20, 1)), "--weight-decay", "0.01", "--num-audio-tokens", str(args.window_tokens),
            "--num-workers", "0", "--eval-steps", str(10**9), "--max-eval-items", "8", "--checkpointing-steps", "0", "--logging-steps", "5",
            "--warp-frequencies", "0.12", "--freq-masks", "2", "--cpu", "--seed", "0"]
    clock = time.perf_counter()
    result = align_train.main(argv)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    seconds = time.perf_counter() - clock
    speeds = [r["samples_per_second"] for r in log]
    return {"final": Path(result["final_dir"]), "steps": max_steps, "clips": max_steps * OUR_BATCH, "seconds": seconds,
            "samples_per_second": sum(speeds) / len(speeds) if speeds else float("nan")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world (python -m world.build)")
    parser.add_argument("--models", type=Path, default=Path("models/world"), help="the shipped world: its text tower gives the targets")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_original_recipe"))
    parser.add_argument("--minutes", type=float, default=5.0, help="wall time of training for each recipe")
    parser.add_argument("--window-tokens", type=int, default=None, help="the audio window in tokens, both recipes (default: the world's 38)")
    parser.add_argument("--max-train-clips", type=int, default=0, help="train on the first K clips only (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from world.settings import NUM_AUDIO_TOKENS
    from world.train_audio import evaluate_folders

    args.window_tokens = args.window_tokens or NUM_AUDIO_TOKENS
    args.text_encoder, args.tokenizer = args.models / "pipeline" / "text_encoder", args.models / "pipeline" / "tokenizer"
    if not (args.world / "audio" / "train" / "metadata.jsonl").is_file():
        raise SystemExit(f"{args.world}/audio/train: no world data; build it with `python -m world.build --out {args.world}`")
    if not (args.text_encoder / "config.json").is_file():
        raise SystemExit(f"{args.text_encoder}: no text tower; the shipped models/world has one (git checkout models/world)")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    init = initial_encoder(args.out, args.text_encoder, args.tokenizer, args.window_tokens)
    budget = args.minutes * 60

    # a short timed trial of each sets its number of steps, so that its cosine schedule ends when the time does
    trial = train_original(args, init, args.out / "trial_original", 2, None)
    original_steps = max(1, int(budget / (trial["seconds"] / trial["steps"])))
    trial = train_ours(args, init, args.out / "trial_ours", 8)
    our_steps = max(1, int(budget * trial["samples_per_second"] / OUR_BATCH))
    print(f"steps for {args.minutes} min: original {original_steps} of {ORIGINAL_MICRO_BATCH}x{ORIGINAL_ACCUMULATION} clips, ours {our_steps} of {OUR_BATCH}", flush=True)

    runs = {"original (HF Trainer, one-way loss over 8, accumulation 16)": train_original(args, init, args.out / "original", original_steps, budget * 1.1),
            "ours (align.train)": train_ours(args, init, args.out / "ours", our_steps)}
    lines = [f"| recipe | clips/s | optimizer steps | clips seen | training min | held-out R@1 | all three right | per-token cosine |",
             "|---|---|---|---|---|---|---|---|"]
    report = {}
    for name, run in runs.items():
        held_out = evaluate_folders(run["final"], args.world / "audio", args.text_encoder, args.tokenizer, parts=("test",))["test"]
        report[name] = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in run.items()}, "held_out": held_out}
        lines.append(f"| {name} | {run['samples_per_second']:.1f} | {run['steps']} | {run['clips']} | {run['seconds'] / 60:.1f} | "
                     f"{held_out['R@1']:.3f} | {100 * held_out['all']:.1f} % | {held_out['cosine']:.3f} |")
    chance = 1 / 72
    lines.append(f"\nheld-out: {held_out['clips']} clips of the world's test voices, 72 captions (chance R@1 {chance:.3f}); "
                 f"original's data preparation (targets into a column): {runs[next(iter(runs))]['prepare_seconds']:.1f} s; {args.threads} threads")
    print("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
