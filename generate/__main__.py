"""Command line: images from a sound, with every setting written down so the run can be repeated.

    python -m generate --audio examples/world/red_circle_left.wav --out out/     # the offline world in miniature
    python -m generate --models real --audio clip.wav --out out/ --num-images 4 --steps 25 --seed 0
    python -m generate --audio rain.wav --out out/ --prompt "as an oil painting"
    python -m generate --audio street.wav --out out/ --window-policy all          # one image per window + street.mp4
    python -m generate --audio bark.wav --out out/ --best-of 4                      # rank by CLAP + CLIP
    python -m generate --audio bark.wav --out out/ --pipeline saved_pipeline/       # a local saved pipeline
    python -m generate --audio rain.wav --out out/ --init-image street.png --strength 0.6 [--mask sky.png]   # edit a picture

Models are chosen as the app and evaluation choose them (generate.model_sets): `--models world` (the default,
offline) or `--models real` (SD 2.1 from the Hub), with the same AUDIO2IMAGE_* environment variables.

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
import tempfile
import time
import warnings
from pathlib import Path

from hearing.audio import SAMPLE_RATE, WINDOW_POLICIES
from hearing.device import DTYPE_CHOICES
from generate import limits
from generate.model_sets import add_model_arguments, native_size, resolve_models, scorer_vocabulary, use_threads_for

DEFAULT_MAX_WINDOWS = 50  # --window-policy all: 5 minutes of sound at ~6 s a window

SETTINGS_FILE = "settings.json"


def build_parser() -> argparse.ArgumentParser:
    parser = limits.OneLineParser(
        prog="python -m generate",
        description="Generate images from a sound: the offline world in miniature by default, Stable Diffusion 2.1 with "
        "--models real. Writes PNGs and settings.json (every setting, resolved model ids and library versions) into --out, "
        "so the run can be repeated exactly.",
        formatter_class=limits.HelpFormatter,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--audio", nargs="+", required=True, metavar="FILE",
                    help="sound file(s): wav, flac, ogg, mp3, and m4a, aac, webm... through the FFmpeg imageio-ffmpeg bundles; any sampling rate, mono or stereo")
    io.add_argument("--out", required=True, type=Path, help="folder for the PNGs and settings.json (created if missing)")
    io.add_argument("--max-audio-seconds", type=float, default=limits.MAX_AUDIO_SECONDS,
                    help=f"refuse longer sounds (at most {limits.MAX_AUDIO_SECONDS:g})")
    io.add_argument("--max-windows", type=int, default=DEFAULT_MAX_WINDOWS,
                    help=f"refuse a sound that --window-policy all would cut into more windows than this (at most {limits.MAX_WINDOWS})")

    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-images", type=int, default=1, help=f"images per sound window (1 to {limits.MAX_IMAGES})")
    gen.add_argument("--steps", type=int, default=None, help=f"denoising steps, 1 to {limits.MAX_STEPS} (default: the base model's, "
                     "25 DPM-Solver++ steps; 1 for a few-step base such as stabilityai/sd-turbo)")
    gen.add_argument("--guidance", type=float, default=None,
                     help=f"classifier-free guidance scale, {limits.MIN_GUIDANCE:g} to {limits.MAX_GUIDANCE:g} (1 or less: off, one UNet "
                          "pass a step; default: 3 for the world, 7.5 for real, 0 for a few-step base)")
    gen.add_argument("--seed", type=int, default=0,
                     help=f"seed of the initial noise, 0 to {limits.MAX_SEED} (drawn on the CPU: the same on every device)")
    gen.add_argument("--height", type=int, default=None,
                     help=f"image height in pixels, a multiple of {limits.SIDE_MULTIPLE} up to {limits.MAX_SIDE} and {limits.MAX_SIDE_FACTOR}× "
                          "the model's own (default: the model's own, 32 for the world, 768 for SD 2.1)")
    gen.add_argument("--width", type=int, default=None, help="image width in pixels, as --height (default: the model's own)")
    gen.add_argument("--window-policy", choices=WINDOW_POLICIES, default="first",
                     help="for sounds longer than the encoder's window: the first window (from where the sound begins; a sound up to 1.5 windows long "
                          "is heard whole, sped up to fit at its pitch), the loudest, or all (one image set per window, in order)")
    gen.add_argument("--init-image", type=Path, default=None, metavar="PNG",
                     help="edit this picture with the sound instead of drawing a new one (resized to --height x --width; "
                          f"at most {limits.MAX_PICTURE_PIXELS:,} pixels)")
    gen.add_argument("--strength", type=float, default=0.6, help="with --init-image: how much may change, 0 (nothing) to 1 (all of it)")
    gen.add_argument("--mask", type=Path, default=None, metavar="PNG",
                     help="with --init-image: white where the picture may change, black where it must stay as it is")
    gen.add_argument("--no-video", dest="video", action="store_false",
                     help="with --window-policy all, do not write the storyboard video (<audio name>.mp4: each window's image while its sound plays)")
    gen.add_argument("--prompt", default=None, help='words added to the sound, e.g. "as an oil painting" (loads the base text encoder)')
    gen.add_argument("--text-weight", type=float, default=1.0,
                     help=f"strength of --prompt, {limits.MIN_TEXT_WEIGHT:g} to {limits.MAX_TEXT_WEIGHT:g} (0 none, 1 as written)")
    gen.add_argument("--best-of", type=int, default=1,
                     help=f"generate N candidates per image (N up to {limits.MAX_BEST_OF}) and keep the best by the CLAP+CLIP scorer (scoring.scorer)")
    add_model_arguments(parser)

    models = parser.add_argument_group("hardware")
    models.add_argument("--num-audio-tokens", type=int, default=None, help=f"window of a plain Wav2Vec2BertModel encoder, 1 to {limits.MAX_AUDIO_TOKENS} (the original: 47)")
    models.add_argument("--batch-size", type=int, default=8,
                        help=f"most images denoised at once, up to {limits.MAX_BATCH_SIZE}; more windows go through in turn")
    models.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (cuda, then mps, then cpu)")
    models.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="auto: fp16 on GPU, fp32 on CPU")
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


def _load_pipeline(args, models):
    from generate.pipeline import AudioToImagePipeline, resolve_device_and_dtype

    device, dtype = resolve_device_and_dtype(args.device, args.dtype)
    use_threads_for(models.models, device)  # the world on a CPU: one thread (generate.model_sets.WORLD_THREADS)
    pipe = AudioToImagePipeline.load(models.pipeline, models.base_model, models.audio_encoder, device, dtype, text_mixing=args.prompt is not None,
                                     num_audio_tokens=args.num_audio_tokens, cpu_offload=args.cpu_offload)
    if models.pipeline is not None:
        folder = Path(models.pipeline)
        index = json.loads((folder / "model_index.json").read_text())  # diffusers drops these underscore keys on load
        resolved = {"models": models.models, "pipeline": str(folder.resolve()), "base_model": index.get("_base_model"),
                    "audio_encoder": index.get("_audio_encoder_source")}
    else:
        resolved = {"models": models.models, "pipeline": None, "base_model": models.base_model, "audio_encoder": models.audio_encoder}
    if args.attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=args.quiet)
    resolved.update({"device": str(device), "dtype": str(dtype).replace("torch.", "")})
    return pipe, resolved


def _load_scorer(models, device):
    from scoring.scorer import AudioImageScorer

    return AudioImageScorer.from_pretrained(models.clap_model, models.clip_model, scorer_vocabulary(models.clap_model, models.vocabulary),
                                            device=device)


def check_arguments(args) -> None:
    """Every setting inside its range (generate.limits), before anything loads; a LimitError names the first one that is not."""
    args.num_images = limits.whole(args.num_images, "--num-images", 1, limits.MAX_IMAGES)
    if args.steps is not None:
        args.steps = limits.whole(args.steps, "--steps", 1, limits.MAX_STEPS)
    if args.guidance is not None:
        args.guidance = limits.number(args.guidance, "--guidance", limits.MIN_GUIDANCE, limits.MAX_GUIDANCE)
    args.seed = limits.seed(args.seed, "--seed")
    for flag in ("height", "width"):
        if getattr(args, flag) is not None:
            setattr(args, flag, limits.side(getattr(args, flag), f"--{flag}"))
    args.best_of = limits.whole(args.best_of, "--best-of", 1, limits.MAX_BEST_OF)
    args.batch_size = limits.whole(args.batch_size, "--batch-size", 1, limits.MAX_BATCH_SIZE)
    args.max_windows = limits.whole(args.max_windows, "--max-windows", 1, limits.MAX_WINDOWS)
    args.max_audio_seconds = limits.audio_seconds(args.max_audio_seconds, "--max-audio-seconds")
    args.strength = limits.number(args.strength, "--strength", 0.0, 1.0)
    args.text_weight = limits.number(args.text_weight, "--text-weight", limits.MIN_TEXT_WEIGHT, limits.MAX_TEXT_WEIGHT)
    args.prompt = limits.prompt(args.prompt, "--prompt")
    if args.num_audio_tokens is not None:
        args.num_audio_tokens = limits.whole(args.num_audio_tokens, "--num-audio-tokens", 1, limits.MAX_AUDIO_TOKENS)
    if args.mask is not None and args.init_image is None:
        raise limits.LimitError("--mask marks where --init-image may change: give the --init-image too.")


def check_model_size(args, models) -> None:
    """--height / --width within what a local pipeline folder's model can draw (read from its config, nothing loaded)."""
    native = native_size(models.pipeline) if models.pipeline else None
    if native is not None:
        for flag in ("height", "width"):
            if getattr(args, flag) is not None:
                limits.side_for_model(getattr(args, flag), f"--{flag}", native)


def writable_folder(out: Path) -> bool:
    """Create `out` if missing and prove a file can be written there (a ValueError naming --out if not); True if it
    was created here, so that a run that fails later can remove it again."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file is already there. Give a folder for the images (it is created if missing).")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ValueError(f"--out {out}: cannot write there ({error.strerror or error}). Give a folder you may write to.") from None
    return created


def run(args) -> dict:
    """Check every setting, then generate and write the images and settings.json; returns the settings written."""
    check_arguments(args)
    models = resolve_models(args)
    args.steps = models.steps if args.steps is None else args.steps  # the base model's own (generate.model_sets.Sampling)
    check_model_size(args, models)
    pictures = {name: limits.open_picture(path, flag, mode) for name, path, flag, mode in
                (("image", args.init_image, "--init-image", "RGB"), ("mask_image", args.mask, "--mask", "L")) if path is not None}
    # Read every sound first: a bad file should fail in a second, not after minutes of model loading.
    sounds = read_sounds(args)
    created = writable_folder(args.out)
    try:
        return generate(args, models, pictures, sounds)
    except BaseException:
        if created and not any(args.out.iterdir()):
            args.out.rmdir()
        raise


def read_sounds(args) -> list:
    from hearing.audio import AudioTooLong, load_audio

    sounds = []
    for path in args.audio:
        try:
            sounds.append(load_audio(path, max_seconds=args.max_audio_seconds))
        except AudioTooLong as error:
            raise AudioTooLong(f"{error} (or raise --max-audio-seconds)") from error
    return sounds


def generate(args, models, pictures: dict, sounds: list) -> dict:
    """Load the models, generate, and write the images and settings.json; returns the settings written."""
    from hearing.audio import TooManyWindows

    import torch  # after the sounds: a bad file is reported before the slow imports

    pipe, resolved = _load_pipeline(args, models)
    scorer = _load_scorer(models, resolved["device"]) if args.best_of > 1 else None
    guidance = models.guidance if args.guidance is None else args.guidance

    started = time.perf_counter()
    try:
        from generate.pipeline import editing_pipeline

        drawing = pipe if not pictures else editing_pipeline(pipe, inpaint="mask_image" in pictures)  # one pipeline per job
        output = drawing(
            [(SAMPLE_RATE, wave) for wave in sounds], prompt=args.prompt, text_weight=args.text_weight, num_images_per_prompt=args.num_images,
            num_inference_steps=args.steps, guidance_scale=guidance, height=args.height, width=args.width,
            generator=torch.Generator("cpu").manual_seed(args.seed), window_policy=args.window_policy, best_of=args.best_of,
            scorer=scorer, max_audio_seconds=None, max_windows=args.max_windows, batch_size=args.batch_size,
            **({"strength": args.strength, **pictures} if pictures else {}),
        )
    except TooManyWindows as error:
        raise TooManyWindows(f"{error} (or raise --max-windows)") from error
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

    videos = []
    if args.window_policy == "all" and args.video:
        from generate.storyboard import write_storyboard

        for a, (stem, wave) in enumerate(zip(stems, sounds)):
            mine = [(image, window) for image, window in zip(output.images, output.windows) if window["audio"] == a]
            video = args.out / f"{f'{a:02d}_' if len(stems) > 1 else ''}{stem}.mp4"
            write_storyboard(video, [i for i, _ in mine], [w for _, w in mine], wave)
            videos.append(video.name)

    height, width = output.images[0].height, output.images[0].width
    settings = {
        "command": "python -m generate " + shlex.join(args.argv),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "argv"},
        "resolved": {**resolved, "guidance": guidance, "height": height, "width": width, "num_audio_tokens": pipe.audio_encoder.config.num_audio_tokens,
                     "window_samples": pipe.audio_encoder.window_samples, "scheduler": pipe.scheduler.__class__.__name__,
                     "scheduler_config": dict(pipe.scheduler.config), "noise": "torch.Generator('cpu').manual_seed(seed), one draw for the whole batch"},
        "versions": _versions(),
        "audio": [{"file": p, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(), "seconds": len(w) / SAMPLE_RATE} for p, w in zip(args.audio, sounds)],
        "images": records,
        "videos": videos,
        "generation_seconds": round(seconds, 3),
    }
    (args.out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, default=str))
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from hearing.audio import AudioError

    # A warning about the input (a truncated file) is one line, like an error, not a source-code excerpt.
    warnings.showwarning = lambda message, category, *_: print(f"warning: {message}", file=sys.stderr)
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
    videos = f", {len(settings['videos'])} storyboard video(s)" if settings["videos"] else ""
    print(f"wrote {len(settings['images'])} images{videos} and {SETTINGS_FILE} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
