"""Audio → image (ours) against text → image (stock StableDiffusionPipeline): time and peak memory, side by side.

Both pipelines share one UNet, VAE and scheduler and run the same steps, size, guidance and seed, so the
difference is the condition: w2v-BERT + adapter on a sound vs CLIP's text encoder on a prompt (and the
prompt length the UNet attends to: 77 positions each). Models have random weights built from configs:

- `tiny`: the test models (architectures/tiny_models.py), for a quick check of the machinery;
- `real`: SD 2.1's architecture (UNet 866M, VAE 84M, OpenCLIP-H text tower 340M) and w2v-BERT 2.0 + adapter (631M)
  (architectures/real_models.py).

    python bench/pipeline_speed.py                          # tiny + real (CPU: real at 256 px, 2 steps)
    python bench/pipeline_speed.py --sizes real --height 768 --width 768 --steps 25   # a GPU run at SD 2.1's size
    python bench/pipeline_speed.py --sizes real --dtype fp16 --batch 4 --json out.json
    python bench/pipeline_speed.py --sizes real --ladder --height 768 --steps 25   # what fp16, SDPA, compile and offload each buy (GPU)
    python bench/pipeline_speed.py --sizes real --turbo                              # SD-Turbo's sampler, no guidance: 1- and 4-step rows, 512 px on a GPU

Side by side: after `--warmup` untimed calls of each, the two pipelines alternate over `--repeats` rounds (audio
first, then text first, ...), and the figure is the median of the paired ratios with its spread, so that a second
job on the machine spoils a pair, not a side (bench/side_by_side.py). The two conditions alone are compared the
same way.

Memory: on CUDA `torch.cuda.max_memory_allocated` during the call (weights included); on CPU the peak
resident set size sampled during the call, minus the size before it with the heap trimmed first (working memory
beyond the weights, which are listed apart). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor  # noqa: E402

from architectures.clip_tokenizer import clip_tokenizer  # noqa: E402
from hearing.text_states import encode_captions  # noqa: E402
from architectures import real_models, tiny_models  # noqa: E402
from bench.side_by_side import alternate, format_ratio  # noqa: E402
from generate.model_sets import SD_TURBO  # noqa: E402
from generate.pipeline import AudioToImagePipeline, resolve_device_and_dtype  # noqa: E402

PROMPT = "a dog barking in the rain"
COMPILE_SECONDS = 120.0  # a guess at compiling SD 2.1's UNet on a GPU (a minute or two): the compile rung starts only with this much time left
TURBO_STEPS = (1, 4)  # the few-step rows --turbo prints without --steps: SD-Turbo's one step, and its most
SOUND = (0.3 * np.sin(2 * np.pi * 440 * np.arange(6 * 16_000) / 16_000)).astype(np.float32)  # 6 s at 16 kHz: one window


def model_set(size: str) -> dict:
    """SD 2.1's and w2v-BERT 2.0's architectures (`real`) or the test models (`tiny`), random weights, nothing downloaded."""
    if size == "real":
        return {"unet": real_models.sd21_unet(), "vae": real_models.sd21_vae(), "text_encoder": real_models.sd21_text_encoder(),
                "audio_encoder": real_models.w2v_bert_audio_encoder()}
    return {"unet": tiny_models.tiny_unet(), "vae": tiny_models.tiny_vae(), "text_encoder": tiny_models.tiny_text_encoder(),
            "audio_encoder": tiny_models.tiny_audio_encoder()}


def sd_turbo_scheduler():
    """SD-Turbo's sampler (generate.model_sets.SD_TURBO: Euler over trailing timesteps, epsilon prediction) over SD 2.1's
    noise schedule; it draws in 1-4 steps without guidance. SD-Turbo's UNet, VAE and text tower have SD 2.1's
    architecture, so the same random-weight models time it."""
    return SD_TURBO.scheduler_from(real_models.sd21_scheduler().config)


def build(size: str, device: torch.device, dtype: torch.dtype) -> tuple[AudioToImagePipeline, StableDiffusionPipeline, dict]:
    """Both pipelines over one set of models (one UNet, VAE and scheduler), and what the models weigh."""
    started = time.perf_counter()
    with torch.device(device):  # weights drawn where they run: seconds on a GPU instead of a minute on its host's CPU
        models = model_set(size)
    tokenizer = clip_tokenizer()  # the real CLIP tokenizer, built offline
    models["audio_encoder"].set_empty_embedding(encode_captions([""], models["text_encoder"], tokenizer)[0])
    for model in models.values():  # built in fp32: cast only when asked (a no-op cast still warns in diffusers)
        model.to(device=device, dtype=None if dtype == torch.float32 else dtype)
    scheduler = real_models.sd21_scheduler()
    ours = AudioToImagePipeline(vae=models["vae"], audio_encoder=models["audio_encoder"], feature_extractor=SeamlessM4TFeatureExtractor(),
                                unet=models["unet"], scheduler=scheduler)
    stock = StableDiffusionPipeline(vae=models["vae"], text_encoder=models["text_encoder"], tokenizer=tokenizer, unet=models["unet"],
                                    scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for pipe in (ours, stock):
        pipe.set_progress_bar_config(disable=True)
    params = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    info = {"build_seconds": round(time.perf_counter() - started, 1), "parameters_millions": {k: round(v / 1e6, 1) for k, v in params.items()},
            "weights_gb": round(sum(p.numel() * p.element_size() for m in models.values() for p in m.parameters()) / 2**30, 2)}
    return ours, stock, info


def set_scheduler(ours: AudioToImagePipeline, stock: StableDiffusionPipeline, scheduler) -> None:
    """One scheduler for both pipelines, as `build` gives them."""
    ours.scheduler = stock.scheduler = scheduler


def timed(fn, device: torch.device, warmup: int, repeats: int, deadline: float | None = None) -> tuple[float, float]:
    """Median seconds over `repeats` calls after `warmup` calls (none started after `deadline`), and the peak memory over them."""
    rounds = alternate({"call": fn}, repeats, warmup, deadline=deadline, device=device, memory=True)
    return rounds.median("call"), max(rounds.peak_gb["call"])


def compare(ours: AudioToImagePipeline, stock: StableDiffusionPipeline, device: torch.device, *, height: int, width: int, steps: int,
            batch: int = 1, guidance: float = 7.5, repeats: int = 5, warmup: int = 1, deadline: float | None = None,
            progress: bool = False) -> dict:
    """Audio → image against text → image, then the two conditions alone, each pair alternated over `repeats` rounds
    (bench/side_by_side.py). No round starts after `deadline` (a `time.perf_counter()` value) but the first."""
    common = {"num_inference_steps": steps, "guidance_scale": guidance, "height": height, "width": width, "output_type": "np"}
    windows = [np.resize(SOUND, ours.audio_encoder.window_samples)] * batch
    guided = guidance > 1

    def run_ours():
        ours([(16_000, SOUND)] * batch, generator=torch.Generator().manual_seed(0), **common)

    def run_stock():
        stock([PROMPT] * batch, generator=torch.Generator().manual_seed(0), **common)

    def encode_ours():
        with torch.no_grad():
            ours.encode_prompt(windows, device, 1, guided, sampling_rate=16_000)

    def encode_stock():
        with torch.no_grad():
            stock.encode_prompt([PROMPT] * batch, device, 1, guided)

    label = f"{height}x{width}, {steps} steps" if progress else None
    images = alternate({"audio_to_image": run_ours, "text_to_image": run_stock}, repeats, warmup, deadline, device, memory=True, progress=label)
    conditions = alternate({"audio_condition": encode_ours, "text_condition": encode_stock}, repeats, warmup, deadline, device, memory=True)
    return {"height": height, "width": width, "steps": steps, "batch": batch, "guidance": guidance, "rounds": images.rounds,
            "stopped_early": images.stopped_early or conditions.stopped_early,
            **{name: images.side(name) for name in images.seconds}, **{name: conditions.side(name) for name in conditions.seconds},
            "time_ratio_audio_over_text": images.ratio("audio_to_image", "text_to_image"),
            "condition_ratio_audio_over_text": conditions.ratio("audio_condition", "text_condition")}


def default_height(size: str, device: torch.device, turbo: bool = False) -> int:
    return 32 if size == "tiny" else (512 if turbo else 768) if device.type == "cuda" else 256


def default_steps(size: str, device: torch.device, turbo: bool = False) -> int:
    return SD_TURBO.steps if turbo else 2 if size == "tiny" or device.type == "cpu" else 25


def bench(size: str, args, device: torch.device, dtype: torch.dtype) -> list[dict]:
    """One row per step count: --steps, else the default (with --turbo: TURBO_STEPS, each a row)."""
    ours, stock, info = build(size, device, dtype)
    if args.turbo:
        set_scheduler(ours, stock, sd_turbo_scheduler())
    height = args.height or default_height(size, device, args.turbo)
    rows = []
    for steps in [args.steps] if args.steps else TURBO_STEPS if args.turbo else [default_steps(size, device)]:
        figures = compare(ours, stock, device, height=height, width=args.width or height, steps=steps, batch=args.batch,
                          guidance=SD_TURBO.guidance if args.turbo else 7.5, repeats=args.repeats, warmup=args.warmup,
                          progress=size == "real")
        rows.append({"size": size, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                     "scheduler": "SD-Turbo (Euler, trailing)" if args.turbo else "DPM-Solver++", **info, **figures})
    return rows


def ladder(ours: AudioToImagePipeline, device: torch.device, *, height: int, width: int, steps: int, batch: int = 1, warmup: int = 1,
           repeats: int = 5, compile_unet: bool = True, deadline: float | None = None) -> list[dict]:
    """Audio → image at one size, each rung adding one speed-up to the last: what each bought, in one run.

    fp32 with diffusers' classic attention → half precision (fp16 on a GPU, bf16 on a CPU) → SDPA attention
    (`AttnProcessor2_0`) → `torch.compile` of the UNet (its compile time reported apart, in the warm-up) →
    model CPU offload (each model on the device only while it runs: the audio encoder leaves once it has encoded).
    `ours` must be in fp32 and is changed in place. `compile_unet=False` skips the compile rung (compiling takes
    minutes on a CPU). A rung due after `deadline` is skipped and says so, and so is the compile rung when less
    than `COMPILE_SECONDS` are left before it."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    common = {"num_inference_steps": steps, "guidance_scale": 7.5, "height": height, "width": width, "output_type": "np"}
    rungs = []

    def measure(name: str, pipe, skip: str | None = None, needs_seconds: float = 0.0) -> None:
        left = None if deadline is None else deadline - time.perf_counter()
        if skip is None and left is not None and left < needs_seconds:
            skip = f"{max(left, 0):.0f} s of the time budget left, {needs_seconds:.0f} s needed" if needs_seconds else "the time budget was spent"
        if skip is not None:
            rungs.append({"rung": name, "skipped": skip})
            print(f"{name:44}skipped: {skip}", flush=True)
            return

        def run():
            pipe([(16_000, SOUND)] * batch, generator=torch.Generator().manual_seed(0), **common)

        started = time.perf_counter()
        for _ in range(max(warmup, 1)):  # the first call pays for compiling, when there is any
            run()
        first = (time.perf_counter() - started) / max(warmup, 1)
        seconds, peak = timed(run, device, 0, repeats, deadline)
        rungs.append({"rung": name, "seconds": round(seconds, 4), "peak_memory_gb": round(peak, 3), "first_call_seconds": round(first, 2)})
        print(f"{name:44}{seconds:>10.3f} s{peak:>10.3f} GB   (first call {first:.1f} s)", flush=True)

    print(f"== ladder: {device}, {height}x{width}, {steps} steps, batch {batch}", flush=True)
    for model in (ours.unet, ours.vae):
        model.set_attn_processor(AttnProcessor())
    measure("fp32, classic attention", ours)
    ours.to(dtype=half)
    measure(f"+ {str(half).replace('torch.', '')}", ours)
    for model in (ours.unet, ours.vae):
        model.set_attn_processor(AttnProcessor2_0())
    measure("+ SDPA attention", ours)
    plain_unet = ours.unet
    if compile_unet:
        ours.unet = torch.compile(plain_unet)
    measure("+ torch.compile(unet)", ours, None if compile_unet else "not asked for (compiling takes minutes on a CPU)", COMPILE_SECONDS)
    ours.unet = plain_unet  # offload hooks wrap the module; compiled modules do not take them
    if device.type == "cuda":
        ours.enable_model_cpu_offload(device=device)
        measure("SDPA + half + model CPU offload (no compile)", ours)
    return rungs


def report(result: dict) -> str:
    memory = "CUDA max_memory_allocated" if result["device"].startswith("cuda") else "peak RSS above the pre-call level"
    lines = [
        f"== {result['size']}: {result['device']} {result['dtype']}, {result['height']}x{result['width']}, {result['steps']} steps, "
        f"batch {result['batch']}, {result['scheduler']}, CFG {result['guidance']:g} (models built in {result['build_seconds']} s; "
        f"weights {result['weights_gb']} GB: " + ", ".join(f"{k} {v}M" for k, v in result["parameters_millions"].items()) + ")",
        f"{'':18}{'seconds':>10}{'peak GB':>10}   (medians of {result['rounds']} alternated rounds; {memory})",
    ]
    for name in ("audio_to_image", "text_to_image", "audio_condition", "text_condition"):
        lines.append(f"{name:18}{result[name]['seconds']:>10.3f}{result[name]['peak_memory_gb']:>10.3f}")
    lines.append(f"time ratio audio→image / text→image: {format_ratio(result['time_ratio_audio_over_text'], 3)}")
    lines.append(f"time ratio audio condition / text condition: {format_ratio(result['condition_ratio_audio_over_text'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["tiny", "real"], default=["tiny", "real"], help="which model sizes to run")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 2 on CPU or tiny, 25 for real on GPU; with --turbo a row each at 1 and 4)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default: 32 tiny; real: 768 on CUDA (512 with --turbo), 256 on CPU)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default: = height)")
    parser.add_argument("--batch", type=int, default=1, help="sounds / prompts per call")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each pipeline first")
    parser.add_argument("--repeats", type=int, default=5, help="alternated rounds (audio, text, then text, audio, ...); medians and the "
                        "spread of the paired ratios are reported")
    parser.add_argument("--turbo", action="store_true", help="SD-Turbo's sampler (Euler, trailing timesteps) without guidance, "
                        "as a few-step base draws (SD-Turbo has SD 2.1's architecture)")
    parser.add_argument("--device", default="auto", help="cuda, mps, cpu or auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="auto: fp16 on GPU, fp32 on CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--ladder", action="store_true", help="instead: audio → image at each --sizes, adding one speed-up at a time "
                        "(half precision, SDPA, torch.compile of the UNet, model CPU offload on CUDA): what each bought")
    parser.add_argument("--no-compile", action="store_true", help="with --ladder: skip the torch.compile rung (minutes on a CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_and_dtype(args.device, args.dtype)
    results = []
    for size in args.sizes:
        if args.ladder:
            ours, _, _ = build(size, device, torch.float32)
            height = args.height or default_height(size, device)
            rungs = ladder(ours, device, height=height, width=args.width or height, steps=args.steps or default_steps(size, device),
                           batch=args.batch, warmup=args.warmup, repeats=args.repeats, compile_unet=not args.no_compile)
            results.append({"size": size, "device": str(device), "ladder": rungs})
            continue
        for row in bench(size, args, device, dtype):
            results.append(row)
            print(report(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
