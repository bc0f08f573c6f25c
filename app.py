"""A sound in, images out: the project's web app (Gradio).

    python app.py                                   # the world in miniature shipped in models/world: offline, CPU
    python app.py --models real                     # Stable Diffusion 2.1 from the Hub (downloaded once, into HF_HOME)
    python app.py --models real --audio-encoder runs/encoder   # your trained encoder on the real base model
    python app.py --pipeline runs/pipeline          # a saved AudioToImagePipeline folder (save_pretrained)
    python app.py --no-scorer --device cpu          # no CLAP ranking, CPU only
    python app.py --port 8080 --host 127.0.0.1

Models are chosen as the CLI and evaluation choose them (generate.model_sets). Every setting also reads an
environment variable (named in `--help`); a flag wins over the variable. Models load once, at start. If one
cannot load (no Hub access, a wrong path) the app prints what failed and how to fix it, and exits with status 2:
serving a page that can only show an error helps no one, and an orchestrator sees the failed start at once.
SIGTERM (`docker stop`) and Ctrl-C close the server cleanly and exit 0.

Tests and notebooks build the interface around models they already hold: `build_app(pipeline, scorer)`.
Importing this module starts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from align.audio import SAMPLE_RATE, AudioError, AudioWarning
from align.device import DTYPE_CHOICES
from align.model_ids import DEFAULT_BASE_MODEL, DEFAULT_CLAP, DEFAULT_CLIP, ORIGINAL_CHECKPOINT
from generate.model_sets import DEFAULT_MODEL_SET, REAL_GUIDANCE, add_model_arguments, resolve_models, scorer_vocabulary

logger = logging.getLogger("audio2image.app")

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
# Inside a container 127.0.0.1 cannot be reached from the host, so the app listens on all interfaces
# unless told otherwise (Gradio's own default is 127.0.0.1).
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7860
WINDOW_POLICIES = [
    ("First window", "first"),
    ("Loudest window", "loudest"),
    ("Every window (one set of images each)", "all"),
]
EXIT_MODEL_LOAD_FAILED = 2
MAX_IMAGES_PER_REQUEST_FACTOR = 4  # with every window of a long sound, up to 4 × --max-images images a request
SHOWN_SIZE = 256  # smaller images (the world draws 32×32) are enlarged to this, pixel for pixel, not blurred


def _env(name: str, default: Any = None) -> Any:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _env_flag(name: str) -> bool:
    return str(os.environ.get(name, "")).strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Settings:
    """What the app serves and how; `from_args` reads flags and environment.

    The model fields are generate.model_sets' resolved choice: `models="world"` (the default) serves the miniature
    shipped in models/world, which needs no Hub; `"real"` serves SD 2.1 with `audio_encoder` (or a saved `pipeline`)
    and the real CLAP and CLIP scorer. Built directly (tests), they are used as given.
    """

    models: str = DEFAULT_MODEL_SET
    base_model: str = DEFAULT_BASE_MODEL
    audio_encoder: str = ORIGINAL_CHECKPOINT
    pipeline: str | None = None  # a saved AudioToImagePipeline folder; replaces base_model + audio_encoder
    clap_model: str = DEFAULT_CLAP
    clip_model: str = DEFAULT_CLIP
    vocabulary: str | tuple[str, ...] = "esc50"  # what the scorer compares sound and picture over
    scorer: bool = True
    text_prompt: bool = True  # load SD's text encoder so a prompt can be mixed with the sound
    device: str = "auto"  # align.device: cuda, then mps, then cpu
    dtype: str = "auto"  # fp16 on a GPU, fp32 on the CPU (bf16/fp16 convolutions crawl there)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    concurrency: int = 1  # one model on one device: parallel runs only contend for it
    max_queue: int = 32
    max_images: int = 4
    default_steps: int = 25
    default_guidance: float = REAL_GUIDANCE
    image_size: int | None = None  # None: the model's own size (768 for SD 2.1); small values for CPU
    max_audio_seconds: float = 300.0
    max_upload: str = "50mb"
    cache_minutes: float = 60.0  # uploads and generated images older than this are deleted from Gradio's cache

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Settings":
        """Flags and environment → settings; the models through generate.model_sets (raises ValueError /
        FileNotFoundError naming a bad choice or a missing folder)."""
        args = vars(build_parser().parse_args(argv))
        choice = resolve_models(argparse.Namespace(**args))
        args.update(models=choice.models, pipeline=choice.pipeline, base_model=choice.base_model, audio_encoder=choice.audio_encoder,
                    clap_model=choice.clap_model, clip_model=choice.clip_model, default_guidance=choice.guidance,
                    vocabulary=scorer_vocabulary(choice.clap_model, choice.vocabulary))
        return cls(**args)


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="python app.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(parser)
    models = parser.add_argument_group("what to load (once, at start)")
    models.add_argument("--no-scorer", dest="scorer", action="store_false", default=not _env_flag("AUDIO2IMAGE_NO_SCORER"),
                        help="do not load CLAP/CLIP: images come unranked, without scores [AUDIO2IMAGE_NO_SCORER=1]")
    models.add_argument("--no-text-prompt", dest="text_prompt", action="store_false",
                        default=not _env_flag("AUDIO2IMAGE_NO_TEXT_PROMPT"),
                        help="do not load SD's text encoder; hides the prompt box, saves memory [AUDIO2IMAGE_NO_TEXT_PROMPT=1]")
    models.add_argument("--device", default=_env("AUDIO2IMAGE_DEVICE", d.device),
                        help="cuda, cuda:1, mps, cpu or auto [AUDIO2IMAGE_DEVICE; default auto: cuda, then mps, then cpu]")
    models.add_argument("--dtype", default=_env("AUDIO2IMAGE_DTYPE", d.dtype), choices=DTYPE_CHOICES,
                        help="weights' dtype [AUDIO2IMAGE_DTYPE; default auto: fp16 on a GPU, fp32 on the CPU]")

    serving = parser.add_argument_group("serving")
    serving.add_argument("--host", default=_env("GRADIO_SERVER_NAME", d.host),
                         help="address to listen on [GRADIO_SERVER_NAME; default %(default)s, reachable from outside a container]")
    serving.add_argument("--port", type=int, default=int(_env("GRADIO_SERVER_PORT", d.port)),
                         help="port [GRADIO_SERVER_PORT; default %(default)s]")
    serving.add_argument("--concurrency", type=int, default=int(_env("AUDIO2IMAGE_CONCURRENCY", d.concurrency)),
                         help="requests generated at once; others wait in the queue [AUDIO2IMAGE_CONCURRENCY; default %(default)s, one device]")
    serving.add_argument("--max-queue", type=int, default=int(_env("AUDIO2IMAGE_MAX_QUEUE", d.max_queue)),
                         help="requests that may wait; past it a user is told the server is busy [AUDIO2IMAGE_MAX_QUEUE; default %(default)s]")
    serving.add_argument("--max-images", type=int, default=int(_env("AUDIO2IMAGE_MAX_IMAGES", d.max_images)),
                         help="most images a request may ask for [AUDIO2IMAGE_MAX_IMAGES; default %(default)s]")
    serving.add_argument("--default-steps", type=int, default=int(_env("AUDIO2IMAGE_DEFAULT_STEPS", d.default_steps)),
                         help="denoising steps the form starts with [AUDIO2IMAGE_DEFAULT_STEPS; default %(default)s]")
    serving.add_argument("--image-size", type=int, default=_env("AUDIO2IMAGE_IMAGE_SIZE", d.image_size),
                         help="image side in pixels, a multiple of 8 [AUDIO2IMAGE_IMAGE_SIZE; default: the model's own, "
                              "768 for SD 2.1; on CPU try 512 or less, a 768 px image takes ~13 min there]")
    serving.add_argument("--max-audio-seconds", type=float, default=float(_env("AUDIO2IMAGE_MAX_AUDIO_SECONDS", d.max_audio_seconds)),
                         help="longest sound accepted [AUDIO2IMAGE_MAX_AUDIO_SECONDS; default %(default)s]")
    serving.add_argument("--max-upload", default=_env("AUDIO2IMAGE_MAX_UPLOAD", d.max_upload),
                         help="largest upload accepted [AUDIO2IMAGE_MAX_UPLOAD; default %(default)s]")
    serving.add_argument("--cache-minutes", type=float, default=float(_env("AUDIO2IMAGE_CACHE_MINUTES", d.cache_minutes)),
                         help="uploads and images are deleted from the server's cache after this long "
                              "[AUDIO2IMAGE_CACHE_MINUTES; default %(default)s]")
    return parser


# --------------------------------------------------------------------------------------------------
# Loading the models (once, at start)
# --------------------------------------------------------------------------------------------------


class ModelLoadError(RuntimeError):
    """A model could not load; the message names it, the cause and the fix."""


def _load(what: str, sources: list[str], fix: str, fn, local_only: bool = False):
    """Run a loader; any failure becomes one ModelLoadError naming the model, the cause and the fix."""
    try:
        return fn()
    except ModelLoadError:
        raise
    except Exception as error:  # a clear message, not a traceback wall: the usual causes are offline or a wrong path
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
        names = " + ".join(sources)
        message = f"cannot load the {what} {names!r}: {cause}"
        remote = [source for source in sources if not Path(source).exists()]
        if remote and not local_only:  # not local folders, so they come from the Hub cache or the Hub itself
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            message += (f"\n{', '.join(remote)} {'is not a local folder' if len(remote) == 1 else 'are not local folders'}, so they must come from the model hub "
                        f"({'HF_HUB_OFFLINE is set' if offline else 'is it reachable from here?'}) or from the cache in "
                        f"HF_HOME (now {os.environ.get('HF_HOME', '~/.cache/huggingface')}). Without hub access, set "
                        "--pipeline PATH to a local pipeline folder, or HF_HOME to a cache holding these models.")
        raise ModelLoadError(f"{message}\nFix: {fix}") from error


def load_models(settings: Settings):
    """(pipeline, scorer or None) on the settings' device, or a ModelLoadError naming problem and fix."""
    try:
        from generate.pipeline import AudioToImagePipeline, resolve_device_and_dtype
    except ImportError as error:
        raise ModelLoadError(f"cannot import the pipeline (generate/pipeline.py): {error}.\n"
                             "Fix: run the app from the repository root with requirements.txt installed.") from error

    device, dtype = resolve_device_and_dtype(settings.device, settings.dtype)
    if settings.pipeline:
        path = Path(settings.pipeline)
        pipeline = _load("pipeline folder", [str(path)], "give the folder written by AudioToImagePipeline.save_pretrained "
                         "(it holds model_index.json and one folder per component).",
                         lambda: AudioToImagePipeline.load(str(path), device=device, dtype=dtype), local_only=True)
    else:
        pipeline = _load(
            "base model + audio encoder", [settings.base_model, settings.audio_encoder],
            "set --base-model / AUDIO2IMAGE_BASE_MODEL and --audio-encoder / AUDIO2IMAGE_AUDIO_ENCODER to local folders, "
            "or serve a saved pipeline folder with --pipeline PATH.",
            lambda: AudioToImagePipeline.load(base_model=settings.base_model, audio_encoder=settings.audio_encoder,
                                              device=device, dtype=dtype, text_mixing=settings.text_prompt),
        )
    scorer = None
    if settings.scorer:
        def load_scorer():
            from scoring.scorer import AudioImageScorer

            return AudioImageScorer.from_pretrained(clap_model=settings.clap_model, clip_model=settings.clip_model,
                                                    vocabulary=settings.vocabulary, device=device)

        scorer = _load("scorer (CLAP + CLIP)", [settings.clap_model, settings.clip_model],
                       "set --clap-model / --clip-model to local folders, or start without ranking: --no-scorer.", load_scorer)
    return pipeline, scorer


# --------------------------------------------------------------------------------------------------
# The request handler
# --------------------------------------------------------------------------------------------------


def _window_samples(pipeline) -> int | None:
    encoder = getattr(pipeline, "audio_encoder", None)
    return getattr(encoder, "window_samples", None)


def _to_float_list(scores) -> list[float] | None:  # the pipeline gives a tensor, or None without a scorer
    if scores is None:
        return None
    if hasattr(scores, "detach"):
        scores = scores.detach().float().cpu().flatten().tolist()
    return [float(s) for s in scores]


def make_handler(pipeline, scorer=None, settings: Settings | None = None):
    """The function behind the Generate button and the /generate API endpoint."""
    settings = settings or Settings()

    def generate(audio: str | None, prompt: str | None, num_images: float, steps: float, guidance: float,
                 seed: float | None, window_policy: str, progress=gr.Progress(), picture=None, mask=None, strength: float = 0.6):
        """Images for a sound, best first: audio file path → [(image, caption)], a status line, and for every window
        of a long sound (policy "all") a storyboard video, else None."""
        import torch

        if audio is None:
            raise gr.Error("No sound yet: upload an audio file or record one with the microphone, then press Generate.",
                           print_exception=False)
        num_images = int(num_images)
        steps = int(steps)
        if not 1 <= num_images <= settings.max_images:
            raise gr.Error(f"Number of images must be between 1 and {settings.max_images}, got {num_images}.")
        if not 1 <= steps <= 200:
            raise gr.Error(f"Steps must be between 1 and 200, got {steps}.")
        if window_policy not in {v for _, v in WINDOW_POLICIES}:
            raise gr.Error(f"Unknown window policy {window_policy!r}: choose first, loudest or all.")
        prompt = (prompt or "").strip() or None
        if prompt and getattr(pipeline, "text_encoder", None) is None:
            gr.Warning("This server was started without the text encoder (--no-text-prompt): the prompt is ignored.")
            prompt = None

        seed = random.randrange(2**31) if seed is None or int(seed) < 0 else int(seed)
        generator = torch.Generator("cpu").manual_seed(seed)  # a CPU generator gives the same images on any device
        # Every window's images count towards the request's limit; the pipeline refuses a sound with more windows
        # before any model runs, with a message that says what to choose instead.
        max_windows = max(1, MAX_IMAGES_PER_REQUEST_FACTOR * settings.max_images // num_images)

        def on_step_end(pipe, step, timestep, callback_kwargs):
            total = getattr(pipe, "num_timesteps", None) or steps
            progress((min(step + 1, total), total), desc="Denoising", unit="steps")
            return callback_kwargs

        progress(0, desc="Encoding the sound")
        size = settings.image_size
        started = time.perf_counter()
        try:
            # The pipeline decodes the file once (align.audio: bounded memory, clear errors) and hands the same
            # 16 kHz windows to the scorer.
            with warnings.catch_warnings(record=True) as heard:
                warnings.simplefilter("always", AudioWarning)
                output = pipeline(
                    audio, prompt=prompt, num_images_per_prompt=num_images, num_inference_steps=steps,
                    guidance_scale=float(guidance), height=size, width=size, generator=generator, window_policy=window_policy,
                    scorer=scorer, callback_on_step_end=on_step_end,
                    callback_on_step_end_tensor_inputs=[],  # the callback only counts steps: it needs no tensors
                    max_audio_seconds=settings.max_audio_seconds, max_windows=max_windows,
                    **({} if picture is None else {"image": picture.convert("RGB"), "strength": float(strength),
                                                   "mask_image": None if mask is None else mask.convert("L")}),
                )
        except AudioError as error:
            raise _user_error(error, audio) from error
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            raise gr.Error("The GPU ran out of memory: ask for fewer images or a smaller size, or try again when "
                           "the server is less busy.") from error
        except gr.Error:
            raise
        except Exception as error:  # keep serving: the user gets a message, the log gets the traceback
            logger.exception("generation failed")
            raise gr.Error(f"Generation failed ({type(error).__name__}: {error}). Try other settings; if it persists, "
                           "the server log has the details.") from error
        for warning in heard:
            if issubclass(warning.category, AudioWarning):
                gr.Warning(str(warning.message).replace(str(Path(audio).parent) + os.sep, ""))
        images = [enlarged(image) for image in output.images]
        n_windows = output.windows[0]["num_windows"] if output.windows else 1
        video = None
        if window_policy == "all" and n_windows > 1:  # a storyboard: each window's best image while its sound plays
            from generate.storyboard import write_storyboard

            video = write_storyboard(videos.new_path(), output.images, output.windows, audio, duration_s=output.windows[-1]["end_s"])
        # With a scorer the pipeline ranks each window's images against that window's sound, best first.
        scores = _to_float_list(output.scores)
        windows = output.windows or [{} for _ in images]

        gallery = []
        for i, (image, window_info) in enumerate(zip(images, windows)):
            rank = i % num_images + 1
            parts = [f"#{rank}" if scores else f"image {rank}"]
            if scores:
                parts.append(f"CLAP score {scores[i]:.3f}")
            if window_info.get("num_windows", 1) > 1:
                parts.append(f"{window_info['start_s']:.1f}–{window_info['end_s']:.1f} s")
            gallery.append((image, " · ".join(parts)))
        elapsed = time.perf_counter() - started
        ranking = ("ranked by CLAP score, best first" + (" within each window" if n_windows > 1 else "")
                   if scores else "unranked (no scorer on this server)")
        status = (f"{len(images)} image(s) in {elapsed:.1f} s · seed {seed} · {n_windows} window(s) of the sound · {ranking}"
                  + (f" · prompt: “{prompt}”" if prompt else ""))
        return gallery, status, (str(video) if video else None)

    videos = VideoFolder(settings.cache_minutes)
    return generate


def make_edit_handler(generate):
    """The Edit button and the /edit endpoint: the sound changes a given picture (its first window is heard)."""

    def edit(audio: str | None, picture, mask, strength: float, prompt: str | None, num_images: float, steps: float,
             guidance: float, seed: float | None, progress=gr.Progress()):
        if picture is None:
            raise gr.Error("No picture yet: upload the picture the sound should change, then press Edit.", print_exception=False)
        gallery, status, _ = generate(audio, prompt, num_images, steps, guidance, seed, "first", progress, picture, mask, strength)
        return gallery, status

    return edit


class VideoFolder:
    """Where the storyboard videos are written before Gradio copies them into its cache; each new video first
    removes the ones older than the cache's own lifetime, so the folder never grows without bound."""

    def __init__(self, minutes: float):
        self.folder, self.seconds = Path(tempfile.mkdtemp(prefix="audio2image-videos-")), minutes * 60

    def new_path(self) -> Path:
        for old in self.folder.glob("*.mp4"):
            if time.time() - old.stat().st_mtime > self.seconds:
                old.unlink(missing_ok=True)
        return self.folder / f"storyboard-{time.time_ns()}.mp4"


def enlarged(image: Image.Image) -> Image.Image:
    """A small image (the world draws 32×32) scaled up by a whole factor, pixel for pixel, so it is not blurred."""
    factor = SHOWN_SIZE // max(image.size)
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def _user_error(error: AudioError, path: str) -> gr.Error:
    """The user's own mistake: a clear message without the server's temp path, and no traceback in the log."""
    message = str(error).replace(str(Path(path).parent) + os.sep, "")
    return gr.Error(f"Cannot use this sound: {message}", print_exception=False)


# --------------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------------


def example_files(models: str = "real") -> list[str]:
    """Sounds each model set understands: the miniature knows only its spoken captions (examples/world)."""
    folder = EXAMPLES_DIR / "world" if models == "world" else EXAMPLES_DIR
    return sorted(str(p) for p in folder.glob("*.wav"))


def introduction(models: str) -> str:
    """The page's first words: what this server draws, and for the world in miniature, what to say to it."""
    if models != "world":
        return "# Sound → image\nUpload or record a sound and Stable Diffusion 2.1 draws what it hears."
    from world.scenes import COLOURS, POSITIONS, SHAPES

    where = " / ".join("in the middle" if p == "middle" else f"on the {p}" for p in POSITIONS)
    return ("# Sound → image: the world in miniature\nThese small models were trained from scratch on this machine "
            "(`python -m world.rebuild`) and draw one shape on a 32×32 picture. Say, or upload someone saying, "
            f"**“a {' / '.join(COLOURS)} {' / '.join(SHAPES)} {where}”**, for example “a blue square in the middle”. "
            "For any sound, start the app with `--models real` (Stable Diffusion 2.1).")


def build_app(pipeline, scorer=None, settings: Settings | None = None) -> gr.Blocks:
    """The Blocks app around already-loaded models, queued; launch it with `demo.launch(...)`."""
    settings = settings or Settings()
    handler = make_handler(pipeline, scorer, settings)
    window = _window_samples(pipeline)
    heard = f"The model hears {window / SAMPLE_RATE:.1f} s at a time; " if window else ""
    has_text = getattr(pipeline, "text_encoder", None) is not None
    cache = int(settings.cache_minutes * 60)

    with gr.Blocks(title="Audio to image", delete_cache=(max(cache // 4, 1), cache)) as demo:
        gr.Markdown(introduction(settings.models) + f" {heard}longer sounds are heard through the window you choose below."
                    + ("" if scorer is not None else "\n\n*Ranking is off on this server: images are shown unranked.*"))
        with gr.Row():
            with gr.Column(scale=1):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Sound", elem_id="audio-input")
                prompt = gr.Textbox(label="Text prompt (optional, mixed with the sound)", placeholder="e.g. an oil painting",
                                    visible=has_text, elem_id="prompt")
                with gr.Accordion("Settings", open=True):
                    num_images = gr.Slider(1, settings.max_images, value=min(2, settings.max_images), step=1, label="Number of images")
                    steps = gr.Slider(1, 100, value=settings.default_steps, step=1, label="Denoising steps")
                    guidance = gr.Slider(1.0, 15.0, value=settings.default_guidance, step=0.5, label="Guidance scale")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                    window_policy = gr.Radio(WINDOW_POLICIES, value="first", label="Long sounds: which part to hear")
                button = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                with gr.Accordion("Or edit a picture with the sound", open=False):
                    picture = gr.Image(type="pil", label="Picture to change", elem_id="edit-picture")
                    mask = gr.Image(type="pil", image_mode="L", label="Mask (optional): white may change, black stays", elem_id="edit-mask")
                    strength = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Strength: 0 keeps the picture, 1 ignores it")
                    edit_button = gr.Button("Edit the picture", elem_id="edit-btn")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Images, best first" if scorer is not None else "Images", columns=2,
                                     object_fit="contain", height="auto", elem_id="gallery", format="png")
                status = gr.Markdown(elem_id="status")
                video = gr.Video(label="Storyboard: every window's image while its sound plays", elem_id="storyboard",
                                 interactive=False)
        examples = example_files(settings.models)
        if examples:
            gr.Examples(examples=[[f] for f in examples], inputs=[audio], label="Example sounds (click one, then Generate)",
                        example_labels=[Path(f).stem.replace("_", " ") for f in examples])
        button.click(handler, inputs=[audio, prompt, num_images, steps, guidance, seed, window_policy],
                     outputs=[gallery, status, video], api_name="generate", concurrency_limit=settings.concurrency)
        edit_button.click(make_edit_handler(handler), inputs=[audio, picture, mask, strength, prompt, num_images, steps, guidance, seed],
                          outputs=[gallery, status], api_name="edit", concurrency_limit=settings.concurrency)
    # Every request waits its turn: `concurrency` at once on the device, up to `max_queue` waiting.
    demo.queue(max_size=settings.max_queue, default_concurrency_limit=settings.concurrency)
    return demo


def create_app(settings: Settings) -> gr.Blocks:
    """Load the models the settings name and build the app around them (raises ModelLoadError)."""
    pipeline, scorer = load_models(settings)
    return build_app(pipeline, scorer, settings)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_args(argv)
    except (ValueError, FileNotFoundError) as error:
        print(f"\nThe app cannot start: {error}", file=sys.stderr)
        return EXIT_MODEL_LOAD_FAILED
    if settings.image_size is not None:
        settings.image_size = int(settings.image_size)
    from align.device import resolve_device_and_dtype

    device = resolve_device_and_dtype(settings.device, settings.dtype)[0].type
    if device == "cpu" and settings.image_size is None and not settings.pipeline:
        logger.warning("running on CPU: a 768 px SD 2.1 image takes ~13 min here; consider --image-size 512 (or a GPU)")
    logger.info("loading models on %s (once; the first start downloads them)...", device)
    try:
        demo = create_app(settings)
    except ModelLoadError as error:
        print(f"\nThe app cannot start: {error}", file=sys.stderr)
        return EXIT_MODEL_LOAD_FAILED
    def stop(signum, frame):  # docker stop sends SIGTERM to PID 1, which ignores it unless told otherwise
        raise KeyboardInterrupt  # what Gradio's launch() waits for: it closes the server and returns

    signal.signal(signal.SIGTERM, stop)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, max_file_size=settings.max_upload,
                    allowed_paths=[str(EXAMPLES_DIR)], show_error=True)
    except KeyboardInterrupt:  # a signal that arrived before the server's own wait loop
        demo.close()
    logger.info("server closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
