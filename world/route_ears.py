"""Stage: the shipped ears, experts and a router: the ears that hear speech best and the ears that hear the sounds
best, each kept as trained, mixed per clip by a linear probe that tells speech from other sound.

    python -m world.route_ears --speech runs/world/speech_expert/final \\
        --sounds runs/world/sound_expert/final runs/world/sound_spectrum/final \\
        --world data/world --clip runs/world/words --out /tmp/route

Every cycle that taught one backbone the sounds cost it speech, and every blend in weight space traded one for the
other point for point (world/README.md, "Everyday sounds"). Here neither expert gives anything up: the encoder
(hearing.encoder.AudioPromptEncoder with sound experts) runs each on the features it hears and mixes the speech
experts' mean (one shipped) with the sound experts' mean by the router's weight, which reads the first sound expert's
last encoder layer pooled over the clip (its mean and spread). Two sound experts that hear the sound two ways (each
clip normalised by its own frames, and by fixed statistics that keep its spectral shape) err on different clips, so
their mean hears more of them right than either (world/README.md, "Two ways to hear a sound"); two speech experts
so ranked captions better but drew held-out voices worse ("Two ways to hear speech").
Only the router trains: a logistic regression on those pooled states of the world's training clips (spoken captions,
the hard ones among them, against the sounds, each clip once with a random crop), the experts frozen. Every spoken clip
is heard a second time made harder (world.build.harden: over music in a big room, or pitched 3-7 semitones), against as
many sound clips, and both kinds weigh the same in the fit whatever their counts: a router fit on the clips alone sent
voices unlike any it heard (SAM's formant voices, music under a voice) to the sound expert, which hears them as sounds
(world/README.md, "Two experts and a router").

Writes <out>/final (the routed AudioPromptEncoder with the speech ears' feature extractor), <out>/held_out.json
(world.train_audio.evaluate_folders on every held-out set), and last <out>/metrics.json (the marker world.rebuild
looks for) with the router's accuracy on its training clips and on every held-out set (a spoken clip is routed
right when the speech side's weight is above one half).
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
from world.build import harden
from world.stage import use_threads, write_json

HARDER = ("music_room", "pitch")  # world.build.harden's acoustic conditions (a carrier phrase needs other words, not other sound)


def made_harder(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A spoken clip over music in a big room or pitched, one of the two at random (world.build.harden)."""
    return harden(wave, HARDER[int(rng.integers(len(HARDER)))], rng)[0]


@torch.no_grad()
def pooled_states(ears: AudioPromptEncoder, extractor: BatchedFeatureExtractor, folder: Path, rows: list[dict], crop: str,
                  rng: np.random.Generator | None = None, batch_size: int = 64, change=None) -> torch.Tensor:
    """What the router reads for each row's clip (AudioPromptEncoder.router_input), in float32; each clip first
    through `change(wave, rng)` where one is given."""
    pooled = []
    for start in range(0, len(rows), batch_size):
        waves = [sf.read(folder / r["file_name"], dtype="float32")[0] for r in rows[start : start + batch_size]]
        if change is not None:
            waves = [change(wave, rng) for wave in waves]
        pooled.append(ears.router_input(**ears.features(waves, extractor, crop=crop, rng=rng)).float())
    return torch.cat(pooled)


def fit_router(ears: AudioPromptEncoder, pooled: torch.Tensor, is_speech: torch.Tensor, steps: int = 500, lr: float = 0.05,
               weight_decay: float = 1e-3) -> float:
    """Train the router alone (a logistic regression, full batch) on pooled states labelled speech (1) or not (0), each
    kind weighing the same however many clips it has; the states are standardised into the router's own weights, so
    that one learning rate suits any backbone. Returns the training accuracy."""
    mean, std = pooled.mean(0), pooled.std(0).clamp(min=1e-6)
    probe = torch.nn.Linear(pooled.shape[1], 1)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = (pooled - mean) / std, is_speech.float()
    share = y.mean().clamp(1e-6, 1 - 1e-6)
    balance = torch.where(y > 0, 0.5 / share, 0.5 / (1 - share))  # 1 for every clip when the kinds are as many
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(probe(x).squeeze(-1), y, weight=balance).backward()
        optimizer.step()
    with torch.no_grad():  # probe((p - mean) / std) = (w / std) · p + (b - (w / std) · mean)
        weight = probe.weight / std
        ears.router.weight.copy_(weight.to(ears.router.weight))
        ears.router.bias.copy_((probe.bias - weight @ mean).to(ears.router.bias))
        return float(((ears.first_expert_weight(pooled.to(ears.router.weight.dtype)) > 0.5) == is_speech.bool()).float().mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, nargs="+", required=True,
                        help="the speech experts (finished runs' final/ folders): their states are averaged; the first's feature extractor is kept")
    parser.add_argument("--sounds", type=Path, nargs="+", required=True,
                        help="the sound experts (finished runs' final/ folders): their states are averaged, the router reads the first's")
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world: train/ for the router, the held-out sets to measure")
    parser.add_argument("--clip", type=Path, default=Path("runs/world/words"), help="the text tower the ears learned (its text_encoder/ and tokenizer/)")
    parser.add_argument("--out", type=Path, default=Path("runs/world/route"))
    parser.add_argument("--clips-per-kind", type=int, default=2000, help="spoken training clips the router hears (each twice: as recorded and made harder) and half the sound clips "
                        "it hears, so that both kinds count as many (default: %(default)s)")
    parser.add_argument("--no-harden", dest="harden", action="store_false",
                        help="fit the router on the training clips alone, without each spoken clip again made harder (as shipped before)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    for flag, folder in (*(("--speech", folder) for folder in args.speech), *(("--sounds", folder) for folder in args.sounds)):
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

    load = lambda folders: [load_audio_encoder(folder, dtype=torch.float32) for folder in folders]
    ears = AudioPromptEncoder.from_experts(load(args.speech), load(args.sounds)).eval()
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(args.speech[0])
    batched = BatchedFeatureExtractor(extractor)
    rng = np.random.default_rng(args.seed)
    rows = read_metadata(train)
    chosen = []
    for sound in (False, True):
        kind = [r for r in rows if ("sound" in r) == sound]
        count = args.clips_per_kind * (2 if sound and args.harden else 1)
        chosen += [kind[i] for i in rng.permutation(len(kind))[:count]]
    spoken = [r for r in chosen if "sound" not in r]
    clips = {"spoken": len(spoken), "made_harder": len(spoken) if args.harden else 0, "sounds": len(chosen) - len(spoken)}
    print("the router hears " + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in clips.items()) + " training clips", flush=True)
    pooled = pooled_states(ears, batched, train, chosen, crop="random", rng=rng)
    is_speech = torch.tensor(["sound" not in r for r in chosen])
    if args.harden:
        pooled = torch.cat([pooled, pooled_states(ears, batched, train, spoken, crop="random", rng=rng, change=made_harder)])
        is_speech = torch.cat([is_speech, torch.ones(len(spoken), dtype=torch.bool)])
    train_accuracy = fit_router(ears, pooled, is_speech)
    routed = {"train": round(train_accuracy, 4)}
    for part in HELD_OUT_PARTS:
        folder = args.world / "audio" / part
        if (folder / "metadata.jsonl").exists():
            held = read_metadata(folder)
            weights = ears.first_expert_weight(pooled_states(ears, batched, folder, held, crop="center"))
            routed[part] = round(float(((weights > 0.5) == torch.tensor(["sound" not in r for r in held])).float().mean()), 4)
    print("routed right: " + ", ".join(f"{part} {share:.3f}" for part, share in routed.items()), flush=True)
    save_and_measure(ears, extractor, args.world, args.clip, args.out)
    metrics = {"speech": [str(folder) for folder in args.speech], "sounds": [str(folder) for folder in args.sounds], "router_clips": clips, "routed_right": routed,
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(args.out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
