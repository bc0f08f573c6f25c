"""A sound in, images out: the project's web app (Gradio).

    python app.py                                   # the world in miniature shipped in models/world: offline, CPU
    python app.py --models real                     # Stable Diffusion 2.1 from the Hub (downloaded once, into HF_HOME)
    python app.py --models real --audio-encoder runs/encoder   # your trained encoder on the real base model
    python app.py --pipeline runs/pipeline          # a saved AudioToImagePipeline folder (save_pretrained)
    python app.py --no-scorer --device cpu          # no CLAP ranking, CPU only
    python app.py --port 8080 --host 127.0.0.1
    python app.py --models real --base-model stabilityai/sd-turbo   # SD-Turbo: one step, no guidance; live mode on a GPU

Live mode (the "Live" section of the page) draws a new picture about every --live-interval seconds from the last
window of what the microphone hears, with --live-steps steps (default: the models' cheapest that keeps the picture
right: 4 for the world, 1 for SD-Turbo); silence (RMS below --live-silence-db) keeps the last picture.

Models are chosen as the CLI and evaluation choose them (generate.model_sets). Every setting also reads an
environment variable (named in `--help`); a flag wins over the variable. Models load once, at start. If one
cannot load (no Hub access, a wrong path) the app prints what failed and how to fix it, and exits with status 2:
serving a page that can only show an error helps no one, and an orchestrator sees the failed start at once. A flag
outside its range (generate.limits) is refused the same way, before anything loads.
SIGTERM (`docker stop`) and Ctrl-C stop the app within STOP_SECONDS and exit 0: a generation under way ends at its
next denoising step and its client is told the server is shutting down, then the server closes.

Tests and notebooks build the interface around models they already hold: `build_app(pipeline, scorer)`.
Importing this module starts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from hearing.audio import SAMPLE_RATE, AudioError, AudioWarning
from hearing.device import DTYPE_CHOICES
from hearing.model_ids import DEFAULT_BASE_MODEL, DEFAULT_CLAP, DEFAULT_CLIP, ORIGINAL_CHECKPOINT
from generate import limits
from generate import live
from generate.model_sets import (DEFAULT_MODEL_SET, DEFAULT_STEPS, REAL_GUIDANCE, add_model_arguments, native_size, resolve_models,
                                 scorer_vocabulary, use_threads_for)

logger = logging.getLogger("audio2image.app")

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
# Inside a container 127.0.0.1 cannot be reached from the host, so the app listens on all interfaces
# unless told otherwise (Gradio's own default is 127.0.0.1).
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7860
WINDOW_POLICIES = [
    ("First window (a sound up to 1.5 windows: all of it, sped up)", "first"),
    ("Loudest window", "loudest"),
    ("Every window (one set of images each)", "all"),
]
EXIT_MODEL_LOAD_FAILED = 2
MAX_IMAGES_PER_REQUEST_FACTOR = 4  # with every window of a long sound, up to 4 × --max-images images a request
SHOWN_SIZE = 256  # smaller images (the world draws 32×32) are enlarged to this, pixel for pixel, not blurred
# A stop (SIGTERM, Ctrl-C) ends the process within STOP_SECONDS: running generations get GENERATION_GRACE_S to reach
# their next step and end, their clients DELIVERY_S to hear why, the server CLOSE_GRACE_S to close.
STOP_SECONDS = 5
GENERATION_GRACE_S, DELIVERY_S, CLOSE_GRACE_S = 1.5, 0.3, 1.5
MAX_CONCURRENCY = 16
MAX_QUEUE = 1000
MAX_CACHE_MINUTES = 7 * 24 * 60.0
# A live stream holds one of the live group's workers while it lasts (Gradio's streaming events do): it ends after this
# long, so a forgotten tab does not keep it for ever.
LIVE_TIME_LIMIT_S = 600
# Streams listening at once. A stream's handler only listens (the painter draws, one picture at a time for all of them),
# so one person's open stream does not shut out the next; each holds about three windows of sound.
LIVE_STREAMS = 16
LIVE_SEED = 0  # one noise for every live picture: the picture changes when the sound does, not at random
STOP_PICTURE_S = 10.0  # Stop waits this long for the picture of the stream's last window


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
    device: str = "auto"  # hearing.device: cuda, then mps, then cpu
    dtype: str = "auto"  # fp16 on a GPU, fp32 on the CPU (bf16/fp16 convolutions crawl there)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    concurrency: int = 1  # one model on one device: parallel runs only contend for it
    max_queue: int = 32
    max_images: int = 4
    default_steps: int = DEFAULT_STEPS
    default_guidance: float = REAL_GUIDANCE
    live_steps: int | None = None  # None: default_steps; from_args: the models' live steps (generate.model_sets.Sampling)
    live_interval: float = live.DEFAULT_INTERVAL_S  # seconds of sound between two live pictures
    live_silence_db: float = live.SILENCE_DBFS  # a stretch quieter than this (RMS, dBFS) keeps the last live picture
    image_size: int | None = None  # None: the model's own size (768 for SD 2.1); small values for CPU
    max_audio_seconds: float = limits.APP_AUDIO_SECONDS  # uploads may be as large as a sound this long (max_upload_bytes)
    cache_minutes: float = 60.0  # uploads and generated images older than this are deleted from Gradio's cache

    @property
    def max_upload_bytes(self) -> int:
        return limits.max_upload_bytes(self.max_audio_seconds)

    def check(self) -> "Settings":
        """Every serving setting inside its range (generate.limits); a LimitError names the first that is not."""
        self.port = limits.whole(self.port, "--port", 1, 65535)
        self.concurrency = limits.whole(self.concurrency, "--concurrency", 1, MAX_CONCURRENCY)
        self.max_queue = limits.whole(self.max_queue, "--max-queue", 1, MAX_QUEUE)
        self.max_images = limits.whole(self.max_images, "--max-images", 1, limits.MAX_IMAGES)
        self.default_steps = limits.whole(self.default_steps, "--default-steps", 1, limits.MAX_STEPS)
        self.default_guidance = limits.number(self.default_guidance, "guidance", limits.MIN_GUIDANCE, limits.MAX_GUIDANCE)
        if self.live_steps is not None:
            self.live_steps = limits.whole(self.live_steps, "--live-steps", 1, limits.MAX_STEPS)
        self.live_interval = limits.number(self.live_interval, "--live-interval", live.MIN_INTERVAL_S, live.MAX_INTERVAL_S)
        self.live_silence_db = limits.number(self.live_silence_db, "--live-silence-db", live.MIN_SILENCE_DBFS, live.MAX_SILENCE_DBFS)
        if self.image_size is not None:
            self.image_size = limits.side(self.image_size, "--image-size")
            native = native_size(self.pipeline)
            if native is not None:
                limits.side_for_model(self.image_size, "--image-size", native)
        self.max_audio_seconds = limits.audio_seconds(self.max_audio_seconds, "--max-audio-seconds")
        self.cache_minutes = limits.number(self.cache_minutes, "--cache-minutes", 1 / 60, MAX_CACHE_MINUTES)
        return self

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Settings":
        """Flags and environment → settings; the models through generate.model_sets (raises ValueError /
        FileNotFoundError naming a bad choice or a missing folder)."""
        args = vars(build_parser().parse_args(argv))
        choice = resolve_models(argparse.Namespace(**args))
        args.update(models=choice.models, pipeline=choice.pipeline, base_model=choice.base_model, audio_encoder=choice.audio_encoder,
                    clap_model=choice.clap_model, clip_model=choice.clip_model, default_guidance=choice.guidance,
                    vocabulary=scorer_vocabulary(choice.clap_model, choice.vocabulary))
        # steps follow the models unless a flag says otherwise: 25 for SD 2.1, 1 for SD-Turbo; live mode the cheapest
        args["default_steps"] = choice.steps if args["default_steps"] is None else args["default_steps"]
        args["live_steps"] = choice.sampling.live if args["live_steps"] is None else args["live_steps"]
        return cls(**args).check()


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = limits.OneLineParser(
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
    serving.add_argument("--port", type=int, default=_env("GRADIO_SERVER_PORT", d.port),
                         help="port [GRADIO_SERVER_PORT; default %(default)s]")
    serving.add_argument("--concurrency", type=int, default=_env("AUDIO2IMAGE_CONCURRENCY", d.concurrency),
                         help=f"requests generated at once, 1 to {MAX_CONCURRENCY}; others wait in the queue "
                              "[AUDIO2IMAGE_CONCURRENCY; default %(default)s, one device]")
    serving.add_argument("--max-queue", type=int, default=_env("AUDIO2IMAGE_MAX_QUEUE", d.max_queue),
                         help=f"requests that may wait, 1 to {MAX_QUEUE}; past it a user is told the server is busy "
                              "[AUDIO2IMAGE_MAX_QUEUE; default %(default)s]")
    serving.add_argument("--max-images", type=int, default=_env("AUDIO2IMAGE_MAX_IMAGES", d.max_images),
                         help=f"most images a request may ask for, 1 to {limits.MAX_IMAGES} [AUDIO2IMAGE_MAX_IMAGES; default %(default)s]")
    serving.add_argument("--default-steps", type=int, default=_env("AUDIO2IMAGE_DEFAULT_STEPS"),
                         help=f"denoising steps the form starts with, 1 to {limits.MAX_STEPS} [AUDIO2IMAGE_DEFAULT_STEPS; default: the "
                              "models', 25, or 1 for a few-step base such as stabilityai/sd-turbo]")
    serving.add_argument("--image-size", type=int, default=_env("AUDIO2IMAGE_IMAGE_SIZE", d.image_size),
                         help=f"image side in pixels, a multiple of {limits.SIDE_MULTIPLE} up to {limits.MAX_SIDE} and {limits.MAX_SIDE_FACTOR}× "
                              "the model's own [AUDIO2IMAGE_IMAGE_SIZE; default: the model's own, 32 for the world, 768 for SD 2.1; "
                              "on CPU try 512 or less for SD 2.1, a 768 px image takes ~13 min there]")
    serving.add_argument("--max-audio-seconds", type=float, default=_env("AUDIO2IMAGE_MAX_AUDIO_SECONDS", d.max_audio_seconds),
                         help=f"longest sound accepted, at most {limits.MAX_AUDIO_SECONDS:g}; an upload may be as large as this "
                              f"many seconds of 16-bit stereo 48 kHz WAV ({limits.UPLOAD_BYTES_PER_SECOND:,} bytes a second) "
                              "[AUDIO2IMAGE_MAX_AUDIO_SECONDS; default %(default)s]")
    serving.add_argument("--cache-minutes", type=float, default=_env("AUDIO2IMAGE_CACHE_MINUTES", d.cache_minutes),
                         help="uploads and images are deleted from the server's cache after this long "
                              "[AUDIO2IMAGE_CACHE_MINUTES; default %(default)s]")
    listening = parser.add_argument_group("live mode (the picture follows the microphone)")
    listening.add_argument("--live-interval", type=float, default=_env("AUDIO2IMAGE_LIVE_INTERVAL", d.live_interval),
                           help=f"seconds of sound between two pictures, {live.MIN_INTERVAL_S:g} to {live.MAX_INTERVAL_S:g} "
                                "[AUDIO2IMAGE_LIVE_INTERVAL; default %(default)s]")
    listening.add_argument("--live-steps", type=int, default=_env("AUDIO2IMAGE_LIVE_STEPS"),
                           help=f"denoising steps of a live picture, 1 to {limits.MAX_STEPS} [AUDIO2IMAGE_LIVE_STEPS; default: the "
                                "models' cheapest that keeps the picture right: 4 for the world, 1 for SD-Turbo, else --default-steps]")
    listening.add_argument("--live-silence-db", type=float, default=_env("AUDIO2IMAGE_LIVE_SILENCE_DB", d.live_silence_db),
                           help="a stretch of sound quieter than this (RMS, dB below full scale) keeps the last picture "
                                "[AUDIO2IMAGE_LIVE_SILENCE_DB; default %(default)s]")
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
    use_threads_for(settings.models, device)  # the world on a CPU: one thread (generate.model_sets.WORLD_THREADS)
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


class ServerStop:
    """How a serving app ends (SIGTERM from `docker stop`, or Ctrl-C), within STOP_SECONDS.

    The signal only raises a flag (a signal handler must take no lock). Generations under way see it at their next
    denoising step and end with a message to their client; requests that arrive after it are refused with the same
    message; then the server closes. `close` reports whether everything ended in time."""

    MESSAGE = "The server is shutting down, so this request was stopped. Try again in a minute."

    def __init__(self):
        self.requested = False
        self._running = 0
        self._changed = threading.Condition()
        self._cleanups: list = []

    def request(self, signum=None, frame=None) -> None:
        self.requested = True

    def check(self) -> None:
        """Raise the shutting-down message to the client once a stop was asked for."""
        if self.requested:
            raise gr.Error(self.MESSAGE, print_exception=False)

    @contextlib.contextmanager
    def running(self):
        """Counts a generation under way, so that a stop can wait for it to end."""
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def at_close(self, cleanup) -> None:
        self._cleanups.append(cleanup)

    def close(self, demo: gr.Blocks) -> bool:
        """Let running generations end and their clients hear why, close the server, run the cleanups; True if all of
        it finished in time (else something is still running, and the process should end without waiting for it)."""
        with self._changed:
            idle = self._changed.wait_for(lambda: self._running == 0, timeout=GENERATION_GRACE_S)
        time.sleep(DELIVERY_S)  # the queue sends each stopped or refused request its message
        closer = threading.Thread(target=demo.close, kwargs={"verbose": False}, daemon=True)
        closer.start()
        closer.join(CLOSE_GRACE_S)
        for cleanup in self._cleanups:
            cleanup()
        return idle and not closer.is_alive()


def _user_message(error: Exception, path: str | None) -> str:
    """An error's message without the server's temp folder (the user's own file name stays)."""
    message = str(error)
    return message.replace(str(Path(path).parent) + os.sep, "") if path else message


def make_handler(pipeline, scorer=None, settings: Settings | None = None, stop: ServerStop | None = None):
    """The function behind the Generate button and the /generate API endpoint."""
    settings = settings or Settings()
    stop = stop or ServerStop()
    videos = VideoFolder(settings.cache_minutes)
    stop.at_close(videos.remove)
    images_default = min(2, settings.max_images)
    editing: dict[bool, Any] = {}

    def editors(inpaint: bool):
        """The image-to-image or inpainting pipeline on the same models, built at its first use."""
        from generate.pipeline import editing_pipeline

        if inpaint not in editing:
            editing[inpaint] = editing_pipeline(pipeline, inpaint)
        return editing[inpaint]

    def generate(audio: str | None = None, prompt: str | None = None, num_images: float = images_default,
                 steps: float = settings.default_steps, guidance: float = settings.default_guidance, seed: float | None = limits.RANDOM_SEED,
                 window_policy: str = "first", progress=gr.Progress(), picture=None, mask=None, strength: float = 0.6):
        """Images for a sound, best first: audio file path → [(image, caption)], a status line, and for every window
        of a long sound (policy "all") a storyboard video, else None."""
        import torch

        stop.check()
        if audio is None:
            raise gr.Error("No sound yet: upload an audio file or record one with the microphone, then press Generate.",
                           print_exception=False)
        try:  # every value in its range (generate.limits) before any model runs: NaN, 2**70 or -8 get one line
            num_images = limits.whole(num_images, "Number of images", 1, settings.max_images)
            steps = limits.whole(steps, "Denoising steps", 1, limits.MAX_STEPS)
            guidance = limits.number(guidance, "Guidance scale", limits.MIN_GUIDANCE, limits.MAX_GUIDANCE)
            seed = limits.seed(seed, "Seed", random_allowed=True)
            prompt = limits.prompt(prompt, "Text prompt")
            strength = limits.number(strength, "Strength", 0.0, 1.0)
            if window_policy not in {v for _, v in WINDOW_POLICIES}:
                raise limits.LimitError(f"Unknown window policy {window_policy!r}: choose first, loudest or all.")
            if picture is not None and picture.width * picture.height > limits.MAX_PICTURE_PIXELS:
                raise limits.LimitError(f"The picture has {picture.width * picture.height:,} pixels, over the limit of "
                                        f"{limits.MAX_PICTURE_PIXELS:,}. Scale it down first.")
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
        if prompt and getattr(pipeline, "text_encoder", None) is None:
            gr.Warning("This server was started without the text encoder (--no-text-prompt): the prompt is ignored.")
            prompt = None

        seed = random.randrange(2**31) if seed is None else seed
        generator = torch.Generator("cpu").manual_seed(seed)  # a CPU generator gives the same images on any device
        # Every window's images count towards the request's limit; the pipeline refuses a sound with more windows
        # before any model runs, with a message that says what to choose instead.
        max_windows = max(1, MAX_IMAGES_PER_REQUEST_FACTOR * settings.max_images // num_images)

        def on_step_end(pipe, step, timestep, callback_kwargs):
            stop.check()  # a stop ends the generation here, at the end of a step, and tells the client why
            total = getattr(pipe, "num_timesteps", None) or steps
            progress((min(step + 1, total), total), desc="Denoising", unit="steps")
            return callback_kwargs

        progress(0, desc="Encoding the sound")
        size = settings.image_size
        started = time.perf_counter()
        try:
            # The pipeline decodes the file once (hearing.audio: bounded memory, clear errors) and hands the same
            # 16 kHz windows to the scorer.
            with stop.running(), warnings.catch_warnings(record=True) as heard:
                warnings.simplefilter("always", AudioWarning)
                drawing = pipeline if picture is None else editors(mask is not None)  # one pipeline per job, same models
                output = drawing(
                    audio, prompt=prompt, num_images_per_prompt=num_images, num_inference_steps=steps,
                    guidance_scale=guidance, height=size, width=size, generator=generator, window_policy=window_policy,
                    scorer=scorer, callback_on_step_end=on_step_end,
                    callback_on_step_end_tensor_inputs=[],  # the callback only counts steps: it needs no tensors
                    max_audio_seconds=settings.max_audio_seconds, max_windows=max_windows,
                    **({} if picture is None else {"image": picture.convert("RGB"), "strength": strength,
                                                   **({} if mask is None else {"mask_image": mask.convert("L")})}),
                )
        except AudioError as error:
            raise gr.Error(f"Cannot use this sound: {_user_message(error, audio)}", print_exception=False) from error
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
                gr.Warning(_user_message(warning.message, audio))
        images = [enlarged(image) for image in output.images]
        n_windows = output.windows[0]["num_windows"] if output.windows else 1
        video = None
        if window_policy == "all" and n_windows > 1:  # a storyboard: each window's best image while its sound plays
            from generate.storyboard import write_storyboard

            video = write_storyboard(videos.new_path(), output.images, output.windows, audio, duration_s=output.windows[-1]["end_s"])
        # With a scorer the pipeline ranks each window's images against that window's sound, best first.
        scores = _to_float_list(output.scores)
        windows = output.windows or [{} for _ in images]

        heard_line, seen = "", []
        if scores and n_windows == 1:  # one sound, one set of pictures: say in words what the score compared
            try:
                with warnings.catch_warnings():  # the pipeline's decoding has already said what the file lacks
                    warnings.simplefilter("ignore", AudioWarning)
                    heard_line, seen = score_in_words(scorer, audio, output.images)
            except Exception:  # the words are a courtesy: the pictures and their scores stand without them
                logger.exception("describing the scores failed")
        gallery = []
        for i, (image, window_info) in enumerate(zip(images, windows)):
            rank = i % num_images + 1
            parts = [f"#{rank}" if scores else f"image {rank}"]
            if scores:
                parts.append(f"score {scores[i]:.2f} of 1")
            if i < len(seen):
                parts.append(seen[i])
            if window_info.get("num_windows", 1) > 1:
                parts.append(f"{window_info['start_s']:.1f}–{window_info['end_s']:.1f} s")
            gallery.append((image, " · ".join(parts)))
        elapsed = time.perf_counter() - started
        ranking = ("ranked best first by how well each picture matches the sound (score 0-1: 1 when CLAP, hearing the sound, "
                   "and CLIP, seeing the picture, name the same thing)" + (" within each window" if n_windows > 1 else "")
                   + (f"; {heard_line}" if heard_line else "") if scores else "unranked (no scorer on this server)")
        status = (f"{len(images)} image(s) in {elapsed:.1f} s · seed {seed} · {n_windows} window(s) of the sound · {ranking}"
                  + (f" · prompt: “{prompt}”" if prompt else ""))
        return gallery, status, (str(video) if video else None)

    return generate


def make_edit_handler(generate):
    """The Edit button and the /edit endpoint: the sound changes a given picture (its first window is heard)."""
    signature = inspect.signature(generate).parameters

    def edit(audio: str | None = None, picture=None, mask=None, strength: float = 0.6, prompt: str | None = None,
             num_images: float = signature["num_images"].default, steps: float = signature["steps"].default,
             guidance: float = signature["guidance"].default, seed: float | None = limits.RANDOM_SEED, progress=gr.Progress()):
        if picture is None:
            raise gr.Error("No picture yet: upload the picture the sound should change, then press Edit.", print_exception=False)
        gallery, status, _ = generate(audio, prompt, num_images, steps, guidance, seed, "first", progress, picture, mask, strength)
        return gallery, status

    return edit


def live_pipeline(pipeline):
    """The pipeline live mode draws with: the same models, its own scheduler. A scheduler keeps the state of the call
    under way (its timesteps, its step), and a live picture may be drawn while the Generate button's request runs."""
    components = getattr(pipeline, "components", None)
    if components is None or getattr(pipeline, "scheduler", None) is None:
        return pipeline
    own = type(pipeline)(**{**components, "scheduler": copy.deepcopy(pipeline.scheduler)})
    own.set_progress_bar_config(disable=True)
    return own


def make_live_handler(pipeline, settings: Settings | None = None, stop: ServerStop | None = None):
    """(listen, stop_listening): the Live section's streaming microphone → a new picture about every interval, and the
    end of a stream. `listen(chunk, listener, steps, interval)` takes each chunk Gradio streams, (rate, samples), with
    the session's generate.live.LiveListener (None at first), and returns (picture or gr.skip() to keep the last one,
    status, listener). It returns at once: a window due is drawn by a generate.live.LivePainter on its own thread
    (`listen.painter`), and its picture goes to the page with the next chunk, or with Stop."""
    settings = settings or Settings()
    stop = stop or ServerStop()
    drawing = live_pipeline(pipeline)
    window = _window_samples(pipeline)

    def draw(wave, steps: int):
        import torch

        def on_step_end(pipe, step, timestep, callback_kwargs):
            stop.check()  # a stop ends the picture here and tells the client why
            return callback_kwargs

        stop.check()
        with stop.running():
            image = drawing((SAMPLE_RATE, wave), num_inference_steps=steps, guidance_scale=settings.default_guidance,
                            height=settings.image_size, width=settings.image_size,
                            generator=torch.Generator("cpu").manual_seed(LIVE_SEED), callback_on_step_end=on_step_end,
                            callback_on_step_end_tensor_inputs=[], max_audio_seconds=None).images[0]
        return image, steps

    painter = live.LivePainter(draw, max_sessions=LIVE_STREAMS)

    def shown(listener: live.LiveListener, heard_s: float):
        """(picture, status) for the session's newest drawn picture, or None when there is none new."""
        picture = painter.latest(listener.session, after=listener.shown)
        if picture is None:
            return None
        listener.shown = picture.number
        error = picture.error
        if error is None:
            image, steps = picture.value
            return enlarged(image), f"Picture {picture.number} in {picture.seconds:.2f} s · {steps} step(s) · {heard_s:.0f} s heard"
        if isinstance(error, gr.Error):  # the server is stopping
            raise error
        if isinstance(error, AudioError):  # nothing in this window after all (a click, digital silence)
            return gr.skip(), f"Nothing to hear: the last picture stays · {heard_s:.0f} s heard"
        logger.error("live picture failed", exc_info=error)  # keep serving: the user gets a message, the log the traceback
        raise gr.Error(f"Drawing failed ({type(error).__name__}: {error}).")

    def listen(chunk=None, listener: live.LiveListener | None = None, steps: float = settings.live_steps or settings.default_steps,
               interval: float = settings.live_interval):
        stop.check()
        try:
            steps = limits.whole(steps, "Live steps", 1, limits.MAX_STEPS)
            interval = limits.number(interval, "Seconds between pictures", live.MIN_INTERVAL_S, live.MAX_INTERVAL_S)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
        if listener is None:
            listener = live.LiveListener(window=window, silence_dbfs=settings.live_silence_db)
        listener.interval_s = interval
        if chunk is None:
            return gr.skip(), "Listening…", listener
        try:
            wave = listener.hear(*chunk)
        except (AudioError, ValueError) as error:  # a chunk that is no sound (over the API anything can arrive)
            raise gr.Error(f"Cannot hear this stream: {error}", print_exception=False) from None
        heard_s = listener.heard / SAMPLE_RATE
        if wave is not None:
            painter.submit(listener.session, listener.pictures, wave, steps)
        new = shown(listener, heard_s)
        if new is not None:
            return (*new, listener)
        if listener.state == "silence":
            return gr.skip(), f"Silence: the last picture stays · {heard_s:.0f} s heard", listener
        return gr.skip(), gr.skip(), listener

    def stop_listening(listener: live.LiveListener | None = None):
        """The end of a stream: the picture of its last window when it comes within STOP_PICTURE_S, and the count."""
        if listener is None:
            return gr.skip(), "Stopped. Record again to go on.", None
        painter.wait(listener.session, timeout=STOP_PICTURE_S)
        try:
            new = shown(listener, listener.heard / SAMPLE_RATE)
        finally:
            painter.forget(listener.session)
        picture = new[0] if new is not None else gr.skip()
        return picture, f"Stopped: {listener.shown} picture(s) drawn; the last one stays. Record again to go on.", None

    listen.painter = painter
    return listen, stop_listening


def bounded_picture(component: gr.Image) -> gr.Image:
    """`component` refusing an upload by the pixel count its header states, before gr.Image decodes it
    (generate.limits); within the limit it decodes as usual. (The component itself is wrapped, not subclassed: Gradio
    writes a .pyi file beside the module of every Component subclass, and the app's folder is read-only in the image.)"""
    decode = component.preprocess

    def preprocess(payload):
        if payload is not None and payload.path:
            try:
                limits.picture_size(payload.path, component.label or "The picture")
            except (ValueError, OSError) as error:
                raise gr.Error(_user_message(error, payload.path), print_exception=False) from None
        return decode(payload)

    component.preprocess = preprocess
    return component


class VideoFolder:
    """Where the storyboard videos are written before Gradio copies them into its cache; made at the first video,
    and each new video first removes the ones older than the cache's own lifetime, so it never grows without bound."""

    def __init__(self, minutes: float):
        self.folder, self.seconds = None, minutes * 60

    def new_path(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="audio2image-videos-"))
        for old in self.folder.glob("*.mp4"):
            if time.time() - old.stat().st_mtime > self.seconds:
                old.unlink(missing_ok=True)
        return self.folder / f"storyboard-{time.time_ns()}.mp4"

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def enlarged(image: Image.Image) -> Image.Image:
    """A small image (the world draws 32×32) scaled up by a whole factor, pixel for pixel, so it is not blurred."""
    factor = SHOWN_SIZE // max(image.size)
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


# --------------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------------


def example_files(models: str = "real") -> list[str]:
    """Sounds each model set understands: the miniature knows its spoken captions (examples/world) and its everyday
    sounds (examples/world/sounds: real recordings from sources it never trained on)."""
    if models != "world":
        return sorted(str(p) for p in EXAMPLES_DIR.glob("*.wav"))
    folder = EXAMPLES_DIR / "world"
    return sorted(str(p) for p in folder.glob("*.wav")) + sorted(str(p) for p in (folder / "sounds").glob("*.wav"))


def score_in_words(scorer, audio, images: list) -> tuple[str, list[str]]:
    """What the ranking score means, in words: the caption the scorer hears in the sound (CLAP) and the one it sees in
    each picture (CLIP), over the same vocabulary; the score is high when the two name the same thing."""
    result = scorer.score(audio, images)
    top = int(result.audio_top[0])
    heard = scorer.entry(top)
    sound_line = f"the scorer hears “{heard}” in the sound ({100 * float(result.audio_probs[top]):.0f} % sure)"
    seen = [scorer.entry(int(index)) for index in result.image_top]
    return sound_line, [f"shows “{s}”" + (" = what it hears" if s == heard else "") for s in seen]


def introduction(models: str) -> str:
    """The page's first words: what this server draws, and for the world in miniature, what to say to it."""
    if models != "world":
        return "# Sound → image\nUpload or record a sound and Stable Diffusion 2.1 draws what it hears."
    from world.scenes import COLOURS, POSITIONS, SHAPES, SOUND_CLASSES

    where = " / ".join("in the middle" if p == "middle" else f"on the {p}" for p in POSITIONS)
    sounds = ", ".join(c.caption for c in SOUND_CLASSES)
    return ("# Sound → image: the world in miniature\nThese small models come with the app (`models/world`, trained from "
            "scratch by `python -m world.rebuild`) and draw one thing on a 32×32 picture. Say, or upload someone saying, "
            f"**“a {' / '.join(COLOURS)} {' / '.join(SHAPES)} {where}”**, for example “a blue square in the middle”; "
            f"or play one of the {len(SOUND_CLASSES)} everyday sounds it knows ({sounds}), which it draws as its emoji "
            "(a recording from a source it never trained on is drawn right only some of the time: world/RESULTS.md says how often). "
            "For any sound, start the app with `--models real` (Stable Diffusion 2.1).")


def build_app(pipeline, scorer=None, settings: Settings | None = None, stop: ServerStop | None = None) -> gr.Blocks:
    """The Blocks app around already-loaded models, queued; launch it with `demo.launch(...)`. With `stop`, a stop
    asked for there ends running generations (see ServerStop)."""
    settings = settings or Settings()
    handler = make_handler(pipeline, scorer, settings, stop)
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
                    steps = gr.Slider(1, limits.MAX_STEPS, value=settings.default_steps, step=1, label="Denoising steps")
                    guidance = gr.Slider(limits.MIN_GUIDANCE, limits.MAX_GUIDANCE, value=settings.default_guidance, step=0.5,
                                         label="Guidance scale")
                    # passed as it comes (no rounding, no bounds of Gradio's): the handler names a bad one in one line
                    seed = gr.Number(value=limits.RANDOM_SEED, precision=None, step=1, label=f"Seed ({limits.RANDOM_SEED}: random)")
                    window_policy = gr.Radio(WINDOW_POLICIES, value="first", label="Long sounds: which part to hear")
                button = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                with gr.Accordion("Or edit a picture with the sound", open=False):
                    picture = bounded_picture(gr.Image(type="pil", label="Picture to change", elem_id="edit-picture"))
                    mask = bounded_picture(gr.Image(type="pil", image_mode="L", label="Mask (optional): white may change, black stays",
                                                    elem_id="edit-mask"))
                    strength = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Strength: 0 keeps the picture, 1 ignores it")
                    edit_button = gr.Button("Edit the picture", elem_id="edit-btn")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Images, best first" if scorer is not None else "Images", columns=2,
                                     object_fit="contain", height="auto", elem_id="gallery", format="png")
                status = gr.Markdown(label="Status", elem_id="status")
                video = gr.Video(label="Storyboard: every window's image while its sound plays", elem_id="storyboard",
                                 interactive=False)
        with gr.Accordion("Live: the picture follows the microphone", open=False, elem_id="live"):
            gr.Markdown(f"Press Record and speak (or play a sound): every {settings.live_interval:g} s or so a new picture shows "
                        "what the last window of sound says. Silence keeps the last picture; Stop ends it.")
            with gr.Row():
                with gr.Column(scale=1):
                    live_audio = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone (live)",
                                          elem_id="live-audio")
                    live_interval = gr.Slider(live.MIN_INTERVAL_S, live.MAX_INTERVAL_S, value=settings.live_interval, step=0.25,
                                              label="Seconds between pictures")
                    live_steps = gr.Slider(1, limits.MAX_STEPS, value=settings.live_steps or settings.default_steps, step=1,
                                           label="Denoising steps of a live picture (fewer: faster)")
                with gr.Column(scale=2):
                    live_picture = gr.Image(label="Live picture", elem_id="live-picture", format="png", interactive=False,
                                            height=SHOWN_SIZE + 40)
                    live_status = gr.Markdown(elem_id="live-status")
            listener = gr.State(None)
        listen, stop_listening = make_live_handler(pipeline, settings, stop)
        # stream_every: chunks a quarter of an interval apart, so a picture is at most that late; a stream holds a
        # worker of its own group ("live", LIVE_STREAMS of them) while it lasts, so uploads are still served.
        live_audio.stream(listen, inputs=[live_audio, listener, live_steps, live_interval], outputs=[live_picture, live_status, listener],
                          api_name="live", stream_every=max(live.MIN_INTERVAL_S, settings.live_interval / 4),
                          time_limit=LIVE_TIME_LIMIT_S, concurrency_limit=LIVE_STREAMS, concurrency_id="live",
                          show_progress="hidden")
        live_audio.stop_recording(stop_listening, inputs=[listener], outputs=[live_picture, live_status, listener], api_name="live_stop",
                                  concurrency_limit=LIVE_STREAMS, concurrency_id="live_stop")
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


def create_app(settings: Settings, stop: ServerStop | None = None) -> gr.Blocks:
    """Load the models the settings name and build the app around them (raises ModelLoadError)."""
    pipeline, scorer = load_models(settings)
    return build_app(pipeline, scorer, settings, stop)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C; 0 after a stop, EXIT_MODEL_LOAD_FAILED when a setting or a model is wrong."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_args(argv)
    except (ValueError, FileNotFoundError) as error:
        print(f"\nThe app cannot start: {error}", file=sys.stderr)
        return EXIT_MODEL_LOAD_FAILED
    Image.MAX_IMAGE_PIXELS = limits.MAX_PICTURE_PIXELS  # any picture this process opens, not only the edit's
    from hearing.device import resolve_device_and_dtype

    device = resolve_device_and_dtype(settings.device, settings.dtype)[0].type
    if device == "cpu" and settings.image_size is None and settings.models == "real" and not settings.pipeline:
        logger.warning("running on CPU: a 768 px SD 2.1 image takes ~13 min here; consider --image-size 512 (or a GPU)")
    if settings.models == "world" or settings.pipeline:
        logger.info("loading models on %s (once, from %s)...", device, settings.pipeline)
    else:
        logger.info("loading models on %s (once; the first start downloads them into HF_HOME, %s)...", device,
                    os.environ.get("HF_HOME", "~/.cache/huggingface"))

    def stop_starting(signum, frame):  # before serving there is nothing to finish: end now
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):  # docker stop sends SIGTERM to PID 1, which ignores it unless told
        signal.signal(sig, stop_starting)
    stop = ServerStop()
    try:
        demo = create_app(settings, stop)
    except ModelLoadError as error:
        print(f"\nThe app cannot start: {error}", file=sys.stderr)
        return EXIT_MODEL_LOAD_FAILED
    for sig in (signal.SIGTERM, signal.SIGINT):  # from here on a stop lets the server finish what it is doing
        signal.signal(sig, stop.request)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, max_file_size=settings.max_upload_bytes,
                    allowed_paths=[str(EXAMPLES_DIR)], show_error=True, prevent_thread_lock=True)
    except OSError as error:  # the port is taken, or the address is not this machine's
        print(f"\nThe app cannot start: cannot serve on {settings.host}:{settings.port}: {error} "
              "Choose another with --port / --host.", file=sys.stderr)
        return EXIT_MODEL_LOAD_FAILED
    while not stop.requested:
        time.sleep(0.1)
    logger.info("stopping: running generations end at their next step, then the server closes")
    clean = stop.close(demo)
    logger.info("server closed" if clean else "server closed; a generation that did not reach its next step in time is left behind")
    return 0


def exit_now(code: int) -> None:
    """End the process with `code` once everything is closed, without the interpreter's own teardown: freeing torch
    and the models takes seconds on a busy machine (past `docker stop`'s patience), and a thread still inside torch
    would abort it ("terminate called without an active exception")."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        status = main()
    except SystemExit as stopped:  # --help, a refused flag (argparse has printed why), or a stop while loading
        status = stopped.code if isinstance(stopped.code, int) else 0 if stopped.code is None else 1
        if isinstance(stopped.code, str):
            print(stopped.code, file=sys.stderr)
    exit_now(status)
