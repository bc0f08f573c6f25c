"""Stage: the shipped ears, two experts and a router: the ears that hear speech best and the ears that hear the sounds
best, each kept as trained, mixed per clip by a linear probe that tells speech from other sound.

    python -m world.route_ears --speech runs/world/polish/final --sounds runs/world/sound_more/final \\
        --world data/world --clip runs/world/words --out /tmp/route

Every cycle that taught one backbone the sounds cost it speech, and every blend in weight space traded one for the
other point for point (world/README.md, "Everyday sounds"). Here neither expert gives anything up: the encoder
(hearing.encoder.AudioPromptEncoder with a sound expert) runs both on the same features and mixes their states with
the router's weight, which reads the sound expert's last encoder layer pooled over the clip (its mean and spread).
Only the router trains: a logistic regression on those pooled states of the world's training clips (spoken captions, the hard ones
among them, against the sounds, as many of each, each clip once with a random crop), the experts frozen.

Writes <out>/final (the routed AudioPromptEncoder with the speech ears' feature extractor), <out>/held_out.json
(world.train_audio.evaluate_folders on every held-out set), and last <out>/metrics.json (the marker world.rebuild
looks for) with the router's accuracy on its training clips and on every held-out set (a spoken clip is routed
right when the speech expert's weight is above one half).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import SeamlessM4TFeatureExtractor

from align.data import read_metadata
from hearing.encoder import AudioPromptEncoder, load_audio_encoder
from hearing.features import BatchedFeatureExtractor
from world.stage import use_threads, write_json


@torch.no_grad()
def pooled_states(ears: AudioPromptEncoder, extractor: BatchedFeatureExtractor, folder: Path, rows: list[dict], crop: str,
                  rng: np.random.Generator | None = None, batch_size: int = 64) -> torch.Tensor:
    """What the router reads for each row's clip (AudioPromptEncoder.expert_states), in float32."""
    pooled = []
    for start in range(0, len(rows), batch_size):
        waves = [sf.read(folder / r["file_name"], dtype="float32")[0] for r in rows[start : start + batch_size]]
        pooled.append(ears.expert_states(**ears.features(waves, extractor, crop=crop, rng=rng))[2].float())
    return torch.cat(pooled)


def fit_router(ears: AudioPromptEncoder, pooled: torch.Tensor, is_speech: torch.Tensor, steps: int = 500, lr: float = 0.05,
               weight_decay: float = 1e-3) -> float:
    """Train the router alone (a logistic regression, full batch) on pooled states labelled speech (1) or not (0); the
    states are standardised into the router's own weights, so that one learning rate suits any backbone. Returns the
    training accuracy."""
    mean, std = pooled.mean(0), pooled.std(0).clamp(min=1e-6)
    probe = torch.nn.Linear(pooled.shape[1], 1)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = (pooled - mean) / std, is_speech.float()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(probe(x).squeeze(-1), y).backward()
        optimizer.step()
    with torch.no_grad():  # probe((p - mean) / std) = (w / std) · p + (b - (w / std) · mean)
        weight = probe.weight / std
        ears.router.weight.copy_(weight.to(ears.router.weight))
        ears.router.bias.copy_((probe.bias - weight @ mean).to(ears.router.bias))
        return float(((ears.first_expert_weight(pooled.to(ears.router.weight.dtype)) > 0.5) == is_speech.bool()).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, required=True, help="the speech expert (a finished run's final/ folder)")
    parser.add_argument("--sounds", type=Path, required=True, help="the sound expert (a finished run's final/ folder)")
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world: train/ for the router, the held-out sets to measure")
    parser.add_argument("--clip", type=Path, default=Path("runs/world/words"), help="the text tower the ears learned (its text_encoder/ and tokenizer/)")
    parser.add_argument("--out", type=Path, default=Path("runs/world/route"))
    parser.add_argument("--clips-per-kind", type=int, default=2000, help="training clips of each kind (speech, sounds) the router sees (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    for flag, folder in (("--speech", args.speech), ("--sounds", args.sounds)):
        if not (folder / "model.safetensors").exists():
            parser.error(f"{flag} {folder}: no model.safetensors there; give a finished run's final/ folder")
    train = args.world / "audio" / "train"
    if not (train / "metadata.jsonl").exists():
        parser.error(f"--world {args.world}: no audio/train/metadata.jsonl there; build the world first (python -m world.build, python -m world.sounds)")
    if args.clips_per_kind < 1:
        parser.error(f"--clips-per-kind {args.clips_per_kind}: give 1 or more")
    use_threads(args.threads)
    start = time.perf_counter()
    from world.train_audio import HELD_OUT_PARTS, save_and_measure

    ears = AudioPromptEncoder.from_experts(load_audio_encoder(args.speech, dtype=torch.float32), load_audio_encoder(args.sounds, dtype=torch.float32)).eval()
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(args.speech)
    batched = BatchedFeatureExtractor(extractor)
    rng = np.random.default_rng(args.seed)
    rows = read_metadata(train)
    chosen = []
    for sound in (False, True):
        kind = [r for r in rows if ("sound" in r) == sound]
        chosen += [kind[i] for i in rng.permutation(len(kind))[: args.clips_per_kind]]
    print(f"the router hears {len(chosen)} training clips ({sum('sound' not in r for r in chosen)} spoken)", flush=True)
    pooled = pooled_states(ears, batched, train, chosen, crop="random", rng=rng)
    train_accuracy = fit_router(ears, pooled, torch.tensor(["sound" not in r for r in chosen]))
    routed = {"train": round(train_accuracy, 4)}
    for part in HELD_OUT_PARTS:
        folder = args.world / "audio" / part
        if (folder / "metadata.jsonl").exists():
            held = read_metadata(folder)
            weights = ears.first_expert_weight(pooled_states(ears, batched, folder, held, crop="center"))
            routed[part] = round(float(((weights > 0.5) == torch.tensor(["sound" not in r for r in held])).float().mean()), 4)
    print("routed right: " + ", ".join(f"{part} {share:.3f}" for part, share in routed.items()), flush=True)
    save_and_measure(ears, extractor, args.world, args.clip, args.out)
    metrics = {"speech": str(args.speech), "sounds": str(args.sounds), "routed_right": routed, "seconds": round(time.perf_counter() - start, 1)}
    write_json(args.out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
