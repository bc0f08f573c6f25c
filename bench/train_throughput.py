"""Training throughput: caption targets read from the cache vs recomputed by the text encoder every step.

Both run the same training step (audio encoder forward, alignment loss, backward, AdamW) on the same
batches, side by side in one process, in rounds whose order alternates (bench/side_by_side.py) so that a busy
machine slows both alike; the cache's speed-up is the median of the rounds' paired ratios, with its spread.
Feature extraction is done once up front: it is the same in both modes and runs in DataLoader workers.

    python bench/train_throughput.py                          # tiny models, seconds on a CPU
    python bench/train_throughput.py --real-sizes --batch-size 4 --steps 3 --repeats 1
        # randomly initialised models of the real sizes (architectures/real_models.py): w2v-BERT 2.0 with the
        # adapter and SD 2.1's text encoder (CLIP hidden 1024, 23 layers, 16 heads); minutes on a CPU, meant for a GPU

The tokenizer is the real CLIP one, built offline (architectures/clip_tokenizer.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTextModel, SeamlessM4TFeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

from hearing.encoder import DEFAULT_NUM_AUDIO_TOKENS, AudioPromptEncoder
from align.loss import AlignmentLoss
from align.targets import TargetCache
from hearing.text_states import encode_captions
from architectures.clip_tokenizer import clip_tokenizer  # the real CLIP vocabulary, built offline
from architectures import real_models, tiny_models
from bench.side_by_side import alternate, format_ratio

CAPTION_WORDS = ["rain", "a dog barking", "church bells", "thunder", "a car horn", "birds singing", "footsteps", "a kettle whistling"]


def build_models(real_sizes: bool, num_audio_tokens: int) -> tuple[AudioPromptEncoder, CLIPTextModel]:
    if real_sizes:
        return real_models.w2v_bert_audio_encoder(num_audio_tokens), real_models.sd21_text_encoder()
    return tiny_models.tiny_audio_encoder(num_audio_tokens), tiny_models.tiny_text_encoder()


def measure(real_sizes: bool = False, batch_size: int = 8, steps: int = 10, repeats: int = 5, warmup_steps: int = 2,
            num_audio_tokens: int = DEFAULT_NUM_AUDIO_TOKENS, device: str | torch.device = "cpu", deadline: float | None = None,
            progress: bool = False) -> dict:
    """Cached targets against the text encoder every step: samples/s of each (medians over the rounds) and the paired
    speed-up of the cache, round by round (bench/side_by_side.py). No round starts after `deadline` but the first."""
    device = torch.device(device)
    with torch.device(device):  # weights drawn where they train: seconds on a GPU instead of a minute on its host's CPU
        encoder, text_encoder = build_models(real_sizes, num_audio_tokens)
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
        picks = rng.choice(len(captions), batch_size, replace=len(captions) < batch_size)
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

        def steps_of(recompute: bool, count: int):
            return lambda: [step(*batches[i % len(batches)], recompute) for i in range(count)]

        for recompute in (False, True):
            steps_of(recompute, warmup_steps)()
        rounds = alternate({"cached targets": steps_of(False, steps), "text encoder every step": steps_of(True, steps)}, repeats, warmup=0,
                           deadline=deadline, device=device, progress="training steps" if progress else None)

    size = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 1)  # noqa: E731
    return {"sizes": "real" if real_sizes else "tiny", "device": str(device), "threads": torch.get_num_threads(), "batch_size": batch_size,
            "positions": positions, "steps_per_round": steps, "rounds": rounds.rounds, "stopped_early": rounds.stopped_early,
            "parameters_millions": {"audio_encoder": size(encoder), "text_encoder": size(text_encoder)},
            "samples_per_second": {name: round(steps * batch_size / rounds.median(name), 2) for name in rounds.seconds},
            "ms_per_step": {name: round(1000 * rounds.median(name) / steps, 2) for name in rounds.seconds},
            # a round's text-encoder time over its cached time: how many times faster the cache trains
            "cache_speedup": rounds.ratio("text encoder every step", "cached targets")}


def report(result: dict) -> str:
    lines = [f"{result['sizes']}-size models on {result['device']} ({result['threads']} thread(s)): audio encoder "
             f"{result['parameters_millions']['audio_encoder']}M, text encoder {result['parameters_millions']['text_encoder']}M parameters; "
             f"batch {result['batch_size']}, {result['positions']} positions, {result['rounds']} alternated rounds of {result['steps_per_round']} steps",
             f"{'targets':<26}{'samples/s':>11}{'ms/step':>10}   (medians over the rounds)"]
    for name, value in result["samples_per_second"].items():
        lines.append(f"{name:<26}{value:>11.1f}{result['ms_per_step'][name]:>10.1f}")
    lines.append(f"speed-up of the cache (each round's text-encoder time over its cached time): {format_ratio(result['cache_speedup'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python bench/train_throughput.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-sizes", action="store_true", help="random-init models of the real sizes instead of the tiny test models")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per training step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode in each round")
    parser.add_argument("--repeats", "--rounds", dest="repeats", type=int, default=5,
                        help="alternating rounds (cached, recomputed, then recomputed, cached, ...) to even out a shared machine")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps per mode first (allocator, kernels)")
    parser.add_argument("--num-audio-tokens", type=int, default=DEFAULT_NUM_AUDIO_TOKENS, help="audio window in tokens (76 = 77 positions with BOS)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.real_sizes, args.batch_size, args.steps, args.repeats, args.warmup_steps, args.num_audio_tokens, args.device,
                     progress=args.real_sizes)
    print(report(result), flush=True)
    return result


if __name__ == "__main__":
    main()
