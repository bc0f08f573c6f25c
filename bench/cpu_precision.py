"""fp32 against bf16 autocast on this CPU: one training step of each world model that trains for long, side by side.

    python bench/cpu_precision.py                 # 1 thread, as each of the rebuild's two alignment processes runs; ~3 min
    python bench/cpu_precision.py --threads 2 --repeats 9

Why: CPUs with bf16 hardware (Intel AMX, AVX512-BF16: `hearing.device.cpu_has_bf16`) multiply bf16 matrices several
times faster than fp32, and elsewhere bf16 is emulated and far slower. Which models gain is measured, not assumed:
- the audio encoder as `world.train_audio` aligns it (w2v-BERT hidden 144, 3 conformer layers and the adapter; 24
  clips of 3.04 s a step, one process's share of the rebuild's 48): its time is in matrix products;
- the world's UNet as `world.train_unet` trains it (64 latents of 8×8×4 a step): its time is in small convolutions;
- the world's CLAP as `world.train_clap` trains it (HTSAT and a small RoBERTa; one clip of each of the 72 captions).

Each step is forward (under autocast for bf16), its loss (`align.loss.AlignmentLoss`, the UNet's MSE, CLAP's own), backward and AdamW,
on fixed random inputs; fp32 and bf16 alternate in rounds whose order alternates too (bench/side_by_side.py), so that a
busy machine slows both alike. Prints the median ms per step of each and bf16's speed-up as the median of the rounds'
paired ratios with its spread; `world.train_audio --precision auto` takes bf16 only where it is faster.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor  # noqa: E402

from hearing.device import cpu_has_bf16  # noqa: E402
from align.loss import AlignmentLoss  # noqa: E402
from bench.side_by_side import alternate, format_ratio  # noqa: E402
from world.settings import TEXT_HIDDEN, TEXT_LENGTH  # noqa: E402
from world.train_audio import make_audio_encoder  # noqa: E402
from world.train_unet import make_unet  # noqa: E402


def audio_step(batch_size: int):
    """One alignment step of the world's audio encoder (the rebuild's size: hidden 144, 3 layers)."""
    encoder = make_audio_encoder(torch.zeros(TEXT_LENGTH, TEXT_HIDDEN), hidden=144, layers=3).train()
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(encoder.window_samples).astype(np.float32) for _ in range(batch_size)]
    features = encoder.features(waves, SeamlessM4TFeatureExtractor())
    targets = torch.randn(batch_size, TEXT_LENGTH, TEXT_HIDDEN)
    loss, optimizer = AlignmentLoss(), torch.optim.AdamW(encoder.parameters(), lr=1e-4)

    def step(autocast) -> None:
        with autocast():
            audio = encoder(**features).last_hidden_state
        loss(audio.float(), targets)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def unet_step(batch_size: int):
    """One denoising step of the world's UNet on 8×8×4 latents, conditioned on caption states."""
    unet = make_unet().train()
    latents, states = torch.randn(batch_size, 4, 8, 8), torch.randn(batch_size, TEXT_LENGTH, TEXT_HIDDEN)
    timesteps = torch.randint(0, 1000, (batch_size,), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)

    def step(autocast) -> None:
        with autocast():
            prediction = unet(latents, timesteps, encoder_hidden_states=states).sample
        torch.nn.functional.mse_loss(prediction.float(), latents).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def clap_step():
    """One contrastive step of the world's CLAP (HTSAT audio tower + RoBERTa text tower), one clip of each caption."""
    from world.scenes import all_scenes
    from world.train_clap import CLAP_RATE, make_clap, world_clap_processor

    captions = [s["caption"] for s in all_scenes()]
    processor = world_clap_processor([w for c in captions for w in c.split()])
    model = make_clap(len(processor.tokenizer)).train()
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(3 * CLAP_RATE).astype(np.float32) for _ in captions]
    features = processor.feature_extractor(waves, sampling_rate=CLAP_RATE, return_tensors="pt")["input_features"]
    tokens = processor(text=captions, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(autocast) -> None:
        with autocast():
            loss = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, input_features=features, return_loss=True).loss
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(prog="python bench/cpu_precision.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the rebuild's alignment runs two processes of one)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision in each round")
    parser.add_argument("--repeats", "--rounds", dest="repeats", type=int, default=5,
                        help="alternated rounds (fp32, bf16, then bf16, fp32, ...); the speed-up is the median of their paired ratios")
    parser.add_argument("--audio-batch", type=int, default=24, help="clips a step for the audio encoder")
    parser.add_argument("--unet-batch", type=int, default=64, help="latents a step for the UNet")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = {"fp32": contextlib.nullcontext, "bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16)}
    models = {"audio encoder (align.train)": audio_step(args.audio_batch), "UNet (world.train_unet)": unet_step(args.unet_batch),
              "CLAP (world.train_clap)": clap_step()}
    print(f"CPU bf16 hardware (hearing.device.cpu_has_bf16): {cpu_has_bf16()}; {args.threads} thread(s); "
          f"{args.steps} steps x {args.repeats} alternated rounds per precision, after 2 warm-up steps", flush=True)
    results = {}
    for name, step in models.items():
        def steps(autocast, count: int = args.steps):
            return lambda: [step(autocast) for _ in range(count)]

        for autocast in precisions.values():  # warm-up: allocator, kernels for these shapes
            steps(autocast, 2)()
        rounds = alternate({precision: steps(autocast) for precision, autocast in precisions.items()}, args.repeats, warmup=0)
        results[name] = {**{p: 1000 * rounds.median(p) / args.steps for p in precisions}, "speedup": rounds.ratio("fp32", "bf16")}
    print(f"{'model':<30}{'fp32 ms/step':>14}{'bf16 ms/step':>14}   bf16 speed-up (paired rounds)")
    for name, ms in results.items():
        print(f"{name:<30}{ms['fp32']:>14.0f}{ms['bf16']:>14.0f}   {format_ratio(ms['speedup'])}")
    return results


if __name__ == "__main__":
    main()
