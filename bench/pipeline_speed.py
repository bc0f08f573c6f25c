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

Memory: on CUDA `torch.cuda.max_memory_allocated` during the call (weights included); on CPU the peak
resident set size sampled during the call, minus the size before it (working memory beyond the weights,
which are listed apart). Timings are medians over `--repeats` runs after `--warmup` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from transformers import SeamlessM4TFeatureExtractor  # noqa: E402

from align.clip_tokenizer import clip_tokenizer  # noqa: E402
from align.targets import encode_captions  # noqa: E402
from architectures import real_models, tiny_models  # noqa: E402
from generate.pipeline import AudioToImagePipeline, resolve_device_and_dtype  # noqa: E402

PROMPT = "a dog barking in the rain"


def model_set(size: str) -> dict:
    """SD 2.1's and w2v-BERT 2.0's architectures (`real`) or the test models (`tiny`), random weights, nothing downloaded."""
    if size == "real":
        return {"unet": real_models.sd21_unet(), "vae": real_models.sd21_vae(), "text_encoder": real_models.sd21_text_encoder(),
                "audio_encoder": real_models.w2v_bert_audio_encoder()}
    return {"unet": tiny_models.tiny_unet(), "vae": tiny_models.tiny_vae(), "text_encoder": tiny_models.tiny_text_encoder(),
            "audio_encoder": tiny_models.tiny_audio_encoder()}


def build(size: str, device: torch.device, dtype: torch.dtype) -> tuple[AudioToImagePipeline, StableDiffusionPipeline, dict]:
    started = time.perf_counter()
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


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or sampled process RSS above the level before it."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval, self.peak_gb = device, interval, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gb = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.peak_gb = (self.peak - self.base) / 2**30
        return False


def timed(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds over `repeats` calls after `warmup` calls, and the peak memory over the timed calls."""
    for _ in range(warmup):
        fn()
    times, peak = [], 0.0
    for _ in range(repeats):
        with PeakMemory(device) as memory:
            started = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
        peak = max(peak, memory.peak_gb)
    return statistics.median(times), peak


def bench(size: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    ours, stock, info = build(size, device, dtype)
    height = args.height or (32 if size == "tiny" else (768 if device.type == "cuda" else 256))
    width = args.width or height
    steps = args.steps or (2 if size == "tiny" or device.type == "cpu" else 25)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(6 * 16_000) / 16_000)).astype(np.float32)
    common = {"num_inference_steps": steps, "guidance_scale": 7.5, "height": height, "width": width, "output_type": "np"}

    def run_ours():
        ours([(16_000, wave)] * args.batch, generator=torch.Generator().manual_seed(0), **common)

    def run_stock():
        stock([PROMPT] * args.batch, generator=torch.Generator().manual_seed(0), **common)

    windows = [np.resize(wave, ours.audio_encoder.window_samples)] * args.batch

    def encode_ours():
        with torch.no_grad():
            ours.encode_prompt(windows, device, 1, True)

    def encode_stock():
        with torch.no_grad():
            stock.encode_prompt([PROMPT] * args.batch, device, 1, True)

    result = {"size": size, "device": str(device), "dtype": str(dtype).replace("torch.", ""), "height": height, "width": width,
              "steps": steps, "batch": args.batch, **info}
    for name, fn in (("audio_to_image", run_ours), ("text_to_image", run_stock), ("audio_condition", encode_ours), ("text_condition", encode_stock)):
        seconds, peak = timed(fn, device, args.warmup, args.repeats or (5 if size == "tiny" else 1))
        result[name] = {"seconds": round(seconds, 4), "peak_memory_gb": round(peak, 3)}
    result["time_ratio_audio_over_text"] = round(result["audio_to_image"]["seconds"] / result["text_to_image"]["seconds"], 3)
    return result


def ladder(size: str, args, device: torch.device) -> list[dict]:
    """Audio → image at one size, each rung adding one speed-up to the last: what each bought, in one run.

    fp32 with diffusers' classic attention → half precision (fp16 on a GPU, bf16 on a CPU) → SDPA attention
    (`AttnProcessor2_0`) → `torch.compile` of the UNet (its compile time reported apart, in the warm-up) →
    model CPU offload (each model on the device only while it runs: the audio encoder leaves once it has encoded)."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    height = args.height or (32 if size == "tiny" else (768 if device.type == "cuda" else 256))
    steps = args.steps or (2 if size == "tiny" or device.type == "cpu" else 25)
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(6 * 16_000) / 16_000)).astype(np.float32)
    common = {"num_inference_steps": steps, "guidance_scale": 7.5, "height": height, "width": args.width or height, "output_type": "np"}
    ours, _, _ = build(size, device, torch.float32)
    rungs = []

    def measure(name: str, pipe) -> None:
        def run():
            pipe([(16_000, wave)] * args.batch, generator=torch.Generator().manual_seed(0), **common)

        started = time.perf_counter()
        for _ in range(max(args.warmup, 1)):  # the first call pays for compiling, when there is any
            run()
        warmup = (time.perf_counter() - started) / max(args.warmup, 1)
        seconds, peak = timed(run, device, 0, args.repeats or (5 if size == "tiny" else 1))
        rungs.append({"rung": name, "seconds": round(seconds, 4), "peak_memory_gb": round(peak, 3), "first_call_seconds": round(warmup, 2)})
        print(f"{name:44}{seconds:>10.3f} s{peak:>10.3f} GB   (first call {warmup:.1f} s)", flush=True)

    print(f"== ladder, {size}: {device}, {common['height']}x{common['width']}, {steps} steps, batch {args.batch}", flush=True)
    for model in (ours.unet, ours.vae):
        model.set_attn_processor(AttnProcessor())
    measure("fp32, classic attention", ours)
    ours.to(dtype=half)
    measure(f"+ {str(half).replace('torch.', '')}", ours)
    for model in (ours.unet, ours.vae):
        model.set_attn_processor(AttnProcessor2_0())
    measure("+ SDPA attention", ours)
    plain_unet = ours.unet
    ours.unet = torch.compile(plain_unet)
    measure("+ torch.compile(unet)", ours)
    ours.unet = plain_unet  # offload hooks wrap the module; compiled modules do not take them
    if device.type == "cuda":
        ours.enable_model_cpu_offload(device=device)
        measure("SDPA + half + model CPU offload (no compile)", ours)
    return rungs


def report(result: dict) -> str:
    memory = "CUDA max_memory_allocated" if result["device"].startswith("cuda") else "peak RSS above the pre-call level"
    lines = [
        f"== {result['size']}: {result['device']} {result['dtype']}, {result['height']}x{result['width']}, {result['steps']} steps, "
        f"batch {result['batch']}, CFG 7.5 (models built in {result['build_seconds']} s; weights {result['weights_gb']} GB: "
        + ", ".join(f"{k} {v}M" for k, v in result["parameters_millions"].items()) + ")",
        f"{'':18}{'seconds':>10}{'peak GB':>10}   ({memory})",
    ]
    for name in ("audio_to_image", "text_to_image", "audio_condition", "text_condition"):
        lines.append(f"{name:18}{result[name]['seconds']:>10.3f}{result[name]['peak_memory_gb']:>10.3f}")
    lines.append(f"time ratio audio→image / text→image: {result['time_ratio_audio_over_text']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=["tiny", "real"], default=["tiny", "real"], help="which model sizes to run")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 2 on CPU or tiny, 25 for real on GPU)")
    parser.add_argument("--height", type=int, default=None, help="pixels (default: 32 tiny; real: 768 on CUDA, 256 on CPU)")
    parser.add_argument("--width", type=int, default=None, help="pixels (default: = height)")
    parser.add_argument("--batch", type=int, default=1, help="sounds / prompts per call")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs, the median is reported (default: 5 tiny, 1 real)")
    parser.add_argument("--device", default="auto", help="cuda, mps, cpu or auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="auto: fp16 on GPU, fp32 on CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--ladder", action="store_true", help="instead: audio → image at each --sizes, adding one speed-up at a time "
                        "(half precision, SDPA, torch.compile of the UNet, model CPU offload on CUDA): what each bought")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = resolve_device_and_dtype(args.device, args.dtype)
    results = []
    for size in args.sizes:
        if args.ladder:
            results.append({"size": size, "device": str(device), "ladder": ladder(size, args, device)})
            continue
        results.append(bench(size, args, device, dtype))
        print(report(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
