"""Command line: images from a sound, with every setting written down so the run can be repeated.

    python -m generate --audio clip.wav --out out/ --num-images 4 --steps 25 --seed 0
    python -m generate --audio rain.wav --out out/ --prompt "as an oil painting"
    python -m generate --audio street.wav --out out/ --window-policy all          # one image per window
    python -m generate --audio bark.wav --out out/ --best-of 4                      # rank by CLAP + CLIP
    python -m generate --audio bark.wav --out out/ --pipeline saved_pipeline/       # a local saved pipeline

Writes one PNG per image and `settings.json`: the arguments, what they resolved to (models, device, dtype,
size, scheduler), library versions, the audio's checksum, and per image its window and score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from generate.defaults import DEFAULT_AUDIO_ENCODER, DEFAULT_BASE_MODEL, MAX_AUDIO_SECONDS, WINDOW_POLICIES

SETTINGS_FILE = "settings.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m generate",
        description="Generate Stable Diffusion 2.1 images from a sound. Writes PNGs and settings.json (every setting, "
        "resolved model ids and library versions) into --out, so the run can be repeated exactly.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--audio", nargs="+", required=True, metavar="FILE",
                    help="sound file(s): wav, flac, ogg, mp3 (others with FFmpeg); any sampling rate, mono or stereo")
    io.add_argument("--out", required=True, type=Path, help="folder for the PNGs and settings.json (created if missing)")
    io.add_argument("--max-audio-seconds", type=float, default=MAX_AUDIO_SECONDS, help="refuse longer sounds")

    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-images", type=int, default=1, help="images per sound window")
    gen.add_argument("--steps", type=int, default=25, help="denoising steps (DPM-Solver++)")
    gen.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (1 = off)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the initial noise (drawn on the CPU: the same on every device)")
    gen.add_argument("--height", type=int, default=None, help="image height in pixels, a multiple of 8 (default: the UNet's, 768 for SD 2.1)")
    gen.add_argument("--width", type=int, default=None, help="image width in pixels, a multiple of 8 (default: the UNet's)")
    gen.add_argument("--window-policy", choices=WINDOW_POLICIES, default="first",
                     help="for sounds longer than the encoder's window: the first window, the loudest, or all (one image set per window, in order)")
    gen.add_argument("--prompt", default=None, help='words added to the sound, e.g. "as an oil painting" (loads the base text encoder)')
    gen.add_argument("--text-weight", type=float, default=1.0, help="strength of --prompt (0 none, 1 as written)")
    gen.add_argument("--best-of", type=int, default=1,
                     help="generate N candidates per image and keep the best by the CLAP+CLIP scorer (generate.scoring)")
    gen.add_argument("--clap-model", default=None, help="CLAP model for --best-of (default: generate.scoring's)")
    gen.add_argument("--clip-model", default=None, help="CLIP model for --best-of (default: generate.scoring's)")

    models = parser.add_argument_group("models and hardware")
    models.add_argument("--pipeline", default=None, help="a saved AudioToImagePipeline folder (save_pretrained); replaces --base-model/--audio-encoder")
    models.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="Stable Diffusion 2.1 base: Hub id or local diffusers folder")
    models.add_argument("--audio-encoder", default=DEFAULT_AUDIO_ENCODER, help="audio prompt encoder: Hub id or local folder (ours, or the original plain Wav2Vec2BertModel layout)")
    models.add_argument("--num-audio-tokens", type=int, default=None, help="window of a plain Wav2Vec2BertModel encoder (the original: 47)")
    models.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (cuda, then mps, then cpu)")
    models.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="auto: fp16 on GPU, fp32 on CPU")
    models.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until used (less GPU memory, slower)")
    models.add_argument("--attention-slicing", action="store_true", help="compute attention in slices (less memory, slower)")
    models.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _versions() -> dict:
    import diffusers
    import numpy
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__, "project_commit": commit}


def _load_pipeline(args):
    from generate.pipeline import AudioToImagePipeline, resolve_device_and_dtype

    device, dtype = resolve_device_and_dtype(args.device, args.dtype)
    pipe = AudioToImagePipeline.load(args.pipeline, args.base_model, args.audio_encoder, device, dtype, text_mixing=args.prompt is not None,
                                     num_audio_tokens=args.num_audio_tokens, cpu_offload=args.cpu_offload)
    if args.pipeline is not None:
        folder = Path(args.pipeline)
        index = json.loads((folder / "model_index.json").read_text())  # diffusers drops these underscore keys on load
        resolved = {"pipeline": str(folder.resolve()), "base_model": index.get("_base_model"), "audio_encoder": index.get("_audio_encoder_source")}
    else:
        resolved = {"pipeline": None, "base_model": args.base_model, "audio_encoder": args.audio_encoder}
    if args.attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=args.quiet)
    resolved.update({"device": str(device), "dtype": str(dtype).replace("torch.", "")})
    return pipe, resolved


def _load_scorer(args, device):
    try:
        from generate.scoring import AudioImageScorer
    except ImportError as error:
        raise ImportError(f"--best-of needs generate.scoring.AudioImageScorer, which could not be imported ({error})") from error
    names = {k: v for k, v in {"clap_model": args.clap_model, "clip_model": args.clip_model}.items() if v is not None}
    return AudioImageScorer.from_pretrained(device=device, **names)


def run(args) -> dict:
    """Generate and write the images and settings.json; returns the settings written."""
    from align.audio import load_audio

    if args.num_images < 1 or args.steps < 1 or args.best_of < 1:
        raise ValueError("--num-images, --steps and --best-of must be at least 1")
    # Read every sound first: a bad file should fail in a second, not after minutes of model loading.
    sounds = [load_audio(path, max_seconds=args.max_audio_seconds) for path in args.audio]
    import torch  # after the sounds: a bad file is reported before the slow imports

    pipe, resolved = _load_pipeline(args)
    scorer = _load_scorer(args, resolved["device"]) if args.best_of > 1 else None

    started = time.perf_counter()
    output = pipe(
        [(16_000, wave) for wave in sounds], prompt=args.prompt, text_weight=args.text_weight, num_images_per_prompt=args.num_images,
        num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.height, width=args.width,
        generator=torch.Generator("cpu").manual_seed(args.seed), window_policy=args.window_policy, best_of=args.best_of,
        scorer=scorer, max_audio_seconds=None,
    )
    seconds = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    stems = [Path(p).stem for p in args.audio]
    counts: dict[tuple, int] = {}
    records = []
    for i, (image, window) in enumerate(zip(output.images, output.windows)):
        key = (window["audio"], window["window"])
        counts[key] = counts.get(key, -1) + 1
        prefix = f"{window['audio']:02d}_" if len(stems) > 1 else ""
        name = f"{prefix}{stems[window['audio']]}_w{window['window']:02d}_{counts[key]:02d}.png"
        image.save(args.out / name)
        score = None if output.scores is None else float(output.scores[i])
        records.append({"file": name, "audio_file": args.audio[window["audio"]], **window, "rank": counts[key], "score": score})

    height, width = output.images[0].height, output.images[0].width
    settings = {
        "command": "python -m generate " + shlex.join(args.argv),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "argv"},
        "resolved": {**resolved, "height": height, "width": width, "num_audio_tokens": pipe.audio_encoder.config.num_audio_tokens,
                     "window_samples": pipe.audio_encoder.window_samples, "scheduler": pipe.scheduler.__class__.__name__,
                     "scheduler_config": dict(pipe.scheduler.config), "noise": "torch.Generator('cpu').manual_seed(seed), one draw for the whole batch"},
        "versions": _versions(),
        "audio": [{"file": p, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(), "seconds": len(w) / 16_000} for p, w in zip(args.audio, sounds)],
        "images": records,
        "generation_seconds": round(seconds, 3),
    }
    (args.out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, default=str))
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from align.audio import AudioError

    if args.quiet:  # also the loading bars of diffusers and transformers
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

    try:
        settings = run(args)
    except (AudioError, ValueError, OSError, ImportError) as error:  # named problems: message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(settings['images'])} images and {SETTINGS_FILE} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
