"""Training throughput: caption targets read from the cache vs recomputed by the text encoder every step.

Both run the same training step (audio encoder forward, alignment loss, backward, AdamW) on the same
batches, side by side in one process, in alternating rounds so that a busy machine slows both alike.
Feature extraction is done once up front: it is the same in both modes and runs in DataLoader workers.

    python bench/train_throughput.py                          # tiny models, seconds on a CPU
    python bench/train_throughput.py --real-sizes --batch-size 4 --steps 3 --rounds 1
        # randomly initialised models of the real sizes (architectures/real_models.py): w2v-BERT 2.0 with the
        # adapter and SD 2.1's text encoder (CLIP hidden 1024, 23 layers, 16 heads); minutes on a CPU, meant for a GPU

The tokenizer is the real CLIP one, built offline (align/clip_tokenizer.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTextModel, SeamlessM4TFeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

from align.encoder import DEFAULT_NUM_AUDIO_TOKENS, AudioPromptEncoder
from align.loss import AlignmentLoss
from align.targets import TargetCache, encode_captions
from align.clip_tokenizer import clip_tokenizer  # the real CLIP vocabulary, built offline
from architectures import real_models, tiny_models

CAPTION_WORDS = ["rain", "a dog barking", "church bells", "thunder", "a car horn", "birds singing", "footsteps", "a kettle whistling"]


def build_models(real_sizes: bool, num_audio_tokens: int) -> tuple[AudioPromptEncoder, CLIPTextModel]:
    if real_sizes:
        return real_models.w2v_bert_audio_encoder(num_audio_tokens), real_models.sd21_text_encoder()
    return tiny_models.tiny_audio_encoder(num_audio_tokens), tiny_models.tiny_text_encoder()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python bench/train_throughput.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-sizes", action="store_true", help="random-init models of the real sizes instead of the tiny test models")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per training step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode in each round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (cached, recomputed, cached, ...) to even out a shared machine")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps per mode first (allocator, kernels)")
    parser.add_argument("--num-audio-tokens", type=int, default=DEFAULT_NUM_AUDIO_TOKENS, help="audio window in tokens (76 = 77 positions with BOS)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    encoder, text_encoder = build_models(args.real_sizes, args.num_audio_tokens)
    # as align.train runs them: the encoder trains in fp32 (autocast is a flag), the text encoder is fp16 on a GPU
    encoder.to(device).train()
    text_encoder.to(device, torch.float16 if device.type == "cuda" else torch.float32)
    tokenizer = clip_tokenizer()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-5)
    criterion = AlignmentLoss()

    captions = [f"{w} {i}" for i in range(4) for w in CAPTION_WORDS]
    rng = np.random.default_rng(0)
    feature_extractor = SeamlessM4TFeatureExtractor()
    batches = []
    for b in range(4):
        picks = rng.choice(len(captions), args.batch_size, replace=len(captions) < args.batch_size)
        waves = [0.1 * rng.standard_normal(encoder.window_samples).astype(np.float32) for _ in picks]
        features = encoder.features(waves, feature_extractor)
        batches.append(({k: v.to(device) for k, v in features.items()}, [captions[i] for i in picks]))

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = TargetCache(cache_dir, text_encoder, tokenizer)
        row_of = dict(zip(captions, cache.ensure(captions, progress=False)))
        encoder.set_empty_embedding(cache.empty_embedding)
        positions = encoder.sequence_length

        def step(features, batch_captions, recompute: bool) -> None:
            if recompute:
                targets = encode_captions(batch_captions, text_encoder, tokenizer).float()
            else:
                targets = cache.get([row_of[c] for c in batch_captions]).to(device)
            audio = encoder(**features).last_hidden_state
            criterion(audio, targets[:, :positions])["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def timed(recompute: bool, steps: int) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(steps):
                step(*batches[i % len(batches)], recompute)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        modes = {"cached targets": False, "text encoder every step": True}
        for recompute in modes.values():
            timed(recompute, args.warmup_steps)
        seconds = dict.fromkeys(modes, 0.0)
        for _ in range(args.rounds):
            for name, recompute in modes.items():
                seconds[name] += timed(recompute, args.steps)

    steps = args.steps * args.rounds
    throughput = {name: steps * args.batch_size / s for name, s in seconds.items()}
    size = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"{'real-size' if args.real_sizes else 'tiny'} models on {device} ({torch.get_num_threads()} threads): audio encoder {size(encoder):.1f}M, "
          f"text encoder {size(text_encoder):.1f}M parameters; batch {args.batch_size}, {positions} positions, {steps} timed steps per mode")
    print(f"{'targets':<26}{'samples/s':>11}{'ms/step':>10}{'relative':>10}")
    base = throughput["cached targets"]
    for name, value in throughput.items():
        print(f"{name:<26}{value:>11.1f}{1000 * seconds[name] / steps:>10.1f}{value / base:>10.2f}")
    return throughput


if __name__ == "__main__":
    main()
