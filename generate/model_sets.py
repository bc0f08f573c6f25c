"""Which models a run uses: one rule, one set of flags and environment variables for the CLI, the app and
evaluation runs.

    world (default)  the miniature trained by `python -m world.rebuild`, shipped in models/world: offline, CPU-sized;
                     it knows spoken captions such as "a red circle on the left" and everyday sounds (a dog
                     barking, rain falling, a helicopter, ...), which it draws as their emoji
    real             Stable Diffusion 2.1 + the audio encoder + CLAP/CLIP, from the Hub (or local folders); any base whose
                     text encoder is SD 2.1's works, e.g. `--base-model stabilityai/sd-turbo`

How a model set samples by default (steps, guidance, scheduler: `Sampling`) is defined here once, for the CLI, the app,
evaluation runs, the pipeline and the benchmarks: SD 2.1 and others 25 DPM-Solver++ steps, the world its own, and a
few-step base (FEW_STEP_BASES, keyed by its Hub id) its distilled sampler: 1-4 steps, no guidance.

Every flag also reads an environment variable (a flag wins). Torch-free, so `--help` and bad paths answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hearing.model_ids import DEFAULT_BASE_MODEL, DEFAULT_CLAP, DEFAULT_CLIP, ORIGINAL_CHECKPOINT

MODEL_SETS = ("world", "real")
DEFAULT_MODEL_SET = "world"
WORLD_MODELS = Path(__file__).resolve().parent.parent / "models" / "world"
WORLD_GUIDANCE = 3.0  # the miniature UNet's best guidance on text → image (world/RESULTS.md)
REAL_GUIDANCE = 7.5
DEFAULT_STEPS = 25  # DPM-Solver++ draws well in 20-25 steps
VOCABULARY_FILE = "vocabulary.txt"  # a scorer folder (clap/, clip/, vocabulary.txt) carries the words it ranks over
# flag → environment variable; the same names in the CLI, the app, evaluation and the Docker image
ENVIRONMENT = {
    "models": "AUDIO2IMAGE_MODELS", "pipeline": "AUDIO2IMAGE_PIPELINE", "base_model": "AUDIO2IMAGE_BASE_MODEL",
    "audio_encoder": "AUDIO2IMAGE_AUDIO_ENCODER", "clap_model": "AUDIO2IMAGE_CLAP_MODEL",
    "clip_model": "AUDIO2IMAGE_CLIP_MODEL", "vocabulary": "AUDIO2IMAGE_VOCABULARY",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Sampling:
    """How a model samples by default: denoising steps, guidance (0 or up to 1: no unconditional pass, one UNet pass a
    step), the diffusers scheduler class and the settings laid over the base's own scheduler config, and the steps
    live mode draws with (the cheapest that keeps the picture right; `steps` unless measured otherwise)."""

    steps: int
    guidance: float
    scheduler: str = "DPMSolverMultistepScheduler"
    scheduler_settings: dict[str, Any] = field(default_factory=dict)
    live_steps: int | None = None

    @property
    def live(self) -> int:
        return self.live_steps or self.steps

    def scheduler_from(self, config: dict):
        """This sampling's scheduler over a base's scheduler `config` (its noise schedule); imports diffusers."""
        import diffusers

        return getattr(diffusers, self.scheduler).from_config({**config, **self.scheduler_settings})


STANDARD_SAMPLING = Sampling(steps=DEFAULT_STEPS, guidance=REAL_GUIDANCE)
# The world's own: its pipeline folder carries its scheduler (DPM-Solver++ over trailing timesteps). Live mode draws
# with 4 steps, the fewest within 2 points of 25 steps on held-out clips with every example right (bench/live.py:
# 86.1 / 86.1 / 84.7 / 83.3 % at 25 / 8 / 4 / 2 steps, 0.32 s an image at 4; docs/app.md).
WORLD_SAMPLING = Sampling(steps=DEFAULT_STEPS, guidance=WORLD_GUIDANCE, live_steps=4)
# Bases distilled from SD 2.1 for few steps, with SD 2.1's text encoder (OpenCLIP ViT-H, 77 × 1024 states), so the
# audio encoder drives them unchanged. SD-Turbo: stabilityai/sd-turbo's scheduler_config.json (Euler over trailing
# timesteps, epsilon prediction), 512 px, 1-4 steps without guidance (its model card).
FEW_STEP_BASES = {
    "stabilityai/sd-turbo": Sampling(steps=1, guidance=0.0, scheduler="EulerDiscreteScheduler",
                                     scheduler_settings={"timestep_spacing": "trailing", "prediction_type": "epsilon"}),
}
SD_TURBO = FEW_STEP_BASES["stabilityai/sd-turbo"]
_CACHE_FOLDER = re.compile(r"models--([\w.-]+)--([\w.-]+)$")  # the Hub cache's name for owner/name


def base_model_id(source: str | os.PathLike | None) -> str | None:
    """The Hub id a base model stands for: the id itself; for a local folder, the id its Hub cache folder names
    (models--owner--name/snapshots/<commit>), the base a saved pipeline folder was built from (model_index.json's
    `_base_model`), or a table id whose name the folder has (`huggingface-cli download stabilityai/sd-turbo
    --local-dir sd-turbo`)."""
    if source is None:
        return None
    text = str(source)
    if _HUB_ID.match(text) and not Path(text).exists():
        return text
    folder = Path(text)
    for part in (folder, *folder.parents):
        match = _CACHE_FOLDER.match(part.name)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    try:
        base = json.loads((folder / "model_index.json").read_text()).get("_base_model")
    except (OSError, ValueError, AttributeError):
        base = None
    if base and base != text:
        return base_model_id(base)
    return next((hub_id for hub_id in FEW_STEP_BASES if hub_id.split("/")[1] == folder.name), None)


def sampling_for(base_model: str | os.PathLike | None) -> Sampling:
    """The sampling a base model (Hub id, local folder or saved pipeline folder) draws with by default."""
    return FEW_STEP_BASES.get(base_model_id(base_model) or "", STANDARD_SAMPLING)


@dataclass(frozen=True)
class ModelChoice:
    """The resolved models of a run: a saved `pipeline` folder, or `base_model` + `audio_encoder`; and the scorer."""

    models: str
    pipeline: str | None
    base_model: str
    audio_encoder: str
    clap_model: str
    clip_model: str
    vocabulary: str | tuple[str, ...] | None  # None: the scorer folder's own words, else ESC-50 (scoring.vocabulary)
    sampling: Sampling = STANDARD_SAMPLING  # default steps, guidance and scheduler (see Sampling)

    @property
    def guidance(self) -> float:
        """The default guidance scale: the world's own pipeline likes 3, SD 2.1 (and others) 7.5, few-step bases 0."""
        return self.sampling.guidance

    @property
    def steps(self) -> int:
        return self.sampling.steps


def _env(name: str) -> str | None:
    value = os.environ.get(ENVIRONMENT[name], "").strip()
    return value or None


def add_model_arguments(parser: argparse.ArgumentParser, scorer: bool = True) -> None:
    """--models, --pipeline, --base-model, --audio-encoder (and --clap-model, --clip-model, --vocabulary)."""
    group = parser.add_argument_group("models (world: offline default; real: SD 2.1 from the Hub)")
    group.add_argument("--models", choices=MODEL_SETS, default=_env("models") or DEFAULT_MODEL_SET,
                       help="world: the miniature shipped in models/world, no Hub needed (it knows spoken captions such as "
                            "'a red circle on the left' and everyday sounds: a dog barking, rain falling, ...); real: Stable Diffusion 2.1, the audio encoder and CLAP/CLIP below, "
                            f"from the Hub [{ENVIRONMENT['models']}; default %(default)s]")
    group.add_argument("--pipeline", default=_env("pipeline"),
                       help=f"a saved AudioToImagePipeline folder (save_pretrained); replaces the model set's [{ENVIRONMENT['pipeline']}]")
    group.add_argument("--base-model", default=_env("base_model"),
                       help=f"real: Stable Diffusion 2.1 base, Hub id or local folder [{ENVIRONMENT['base_model']}; default {DEFAULT_BASE_MODEL}]")
    group.add_argument("--audio-encoder", default=_env("audio_encoder"),
                       help="real: audio prompt encoder, a folder written by `python -m align.train` or a Hub id "
                            f"[{ENVIRONMENT['audio_encoder']}; default {ORIGINAL_CHECKPOINT}]")
    if scorer:
        group.add_argument("--clap-model", default=_env("clap_model"),
                           help=f"CLAP of the scorer [{ENVIRONMENT['clap_model']}; default: world's, or {DEFAULT_CLAP}]")
        group.add_argument("--clip-model", default=_env("clip_model"),
                           help=f"CLIP of the scorer [{ENVIRONMENT['clip_model']}; default: world's, or {DEFAULT_CLIP}]")
        group.add_argument("--vocabulary", nargs="+", default=_env("vocabulary"), metavar="WORDS",
                           help="what the scorer compares sound and image over: esc50, audioset, a text file (one entry a line) "
                                f"or several entries [{ENVIRONMENT['vocabulary']}; default: the scorer folder's vocabulary.txt, else esc50]")


def check_model_source(value: str | None, flag: str) -> None:
    """Refuse a local path that does not exist before anything loads, instead of the Hub's repo-id complaint."""
    if value is None or Path(value).exists():
        return
    if not _HUB_ID.match(value):
        raise FileNotFoundError(f"{flag} {value}: no such folder, and not a Hub id (owner/name). Give an existing local folder or a Hub id.")


def resolve_models(args: argparse.Namespace) -> ModelChoice:
    """The flags (and environment) of `add_model_arguments` → the models to load, local paths checked."""
    world = args.models == "world"
    if args.models not in MODEL_SETS:
        raise ValueError(f"unknown model set {args.models!r}: use one of {', '.join(MODEL_SETS)}")
    scorer = WORLD_MODELS / "scorer"
    vocabulary = getattr(args, "vocabulary", None)
    if isinstance(vocabulary, list):
        vocabulary = vocabulary[0] if len(vocabulary) == 1 else tuple(vocabulary)
    if world and (args.base_model or args.audio_encoder):
        raise ValueError("--base-model and --audio-encoder choose parts of the real models: add --models real "
                         f"(or set {ENVIRONMENT['models']}=real)")
    choice = ModelChoice(
        models=args.models,
        pipeline=args.pipeline or (str(WORLD_MODELS / "pipeline") if world else None),
        base_model=args.base_model or DEFAULT_BASE_MODEL,
        audio_encoder=args.audio_encoder or ORIGINAL_CHECKPOINT,
        clap_model=getattr(args, "clap_model", None) or str(scorer / "clap" if world else DEFAULT_CLAP),
        clip_model=getattr(args, "clip_model", None) or str(scorer / "clip" if world else DEFAULT_CLIP),
        vocabulary=vocabulary,
    )
    if choice.pipeline == str(WORLD_MODELS / "pipeline"):
        choice = replace(choice, sampling=WORLD_SAMPLING)
    else:
        choice = replace(choice, sampling=sampling_for(choice.pipeline or choice.base_model))
    if world and choice.pipeline == str(WORLD_MODELS / "pipeline") and not (WORLD_MODELS / "pipeline" / "model_index.json").is_file():
        raise FileNotFoundError(f"the offline default models are missing: no saved pipeline in {WORLD_MODELS / 'pipeline'}. "
                                "Rebuild them with `python -m world.rebuild`, or use the real models with --models real.")
    if choice.pipeline is not None and not Path(choice.pipeline).is_dir():
        raise FileNotFoundError(f"--pipeline {choice.pipeline}: no such folder. Give the folder written by AudioToImagePipeline.save_pretrained.")
    for flag, value in (("--base-model", args.base_model), ("--audio-encoder", args.audio_encoder),
                        ("--clap-model", getattr(args, "clap_model", None)), ("--clip-model", getattr(args, "clip_model", None))):
        check_model_source(value, flag)
    return choice


def scorer_vocabulary(clap_model: str, vocabulary: str | tuple[str, ...] | None) -> str | tuple[str, ...]:
    """The words to score over: the one asked for, else the vocabulary.txt a scorer folder carries beside (or in)
    its CLAP folder, else ESC-50's 50 classes."""
    if vocabulary is not None:
        return vocabulary
    for folder in (Path(clap_model), Path(clap_model).parent):
        if Path(clap_model).exists() and (folder / VOCABULARY_FILE).is_file():
            return str(folder / VOCABULARY_FILE)
    return "esc50"


def native_size(pipeline: str | os.PathLike | None) -> int | None:
    """The picture side (pixels) that a saved pipeline folder's UNet draws, read from its configs without loading
    anything: UNet sample size × the VAE's scale. None when it is no local pipeline folder."""
    if pipeline is None:
        return None
    folder = Path(pipeline)
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        size = unet["sample_size"]
        return int(size[0] if isinstance(size, list) else size) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


# bench/threads.py on 2 cores: the world's 25-step picture takes 0.89 s at 1 torch thread and 0.89 s at 2 when the
# machine is idle (two images: 1.07 s against 0.88 s), but 0.85 s against 3.36 s (two images 1.37 s against 5.40 s)
# with a second job busy on one core. One thread loses at most 15 % idle and wins 3.7-3.9x when anything else runs.
WORLD_THREADS = 1


def use_threads_for(model_set: str, device) -> int:
    """Set and return the torch threads for a run: WORLD_THREADS for the world's tiny models on a CPU, unless
    OMP_NUM_THREADS says otherwise; the real models keep torch's default (every core)."""
    import torch

    if model_set == "world" and str(device).startswith("cpu") and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(WORLD_THREADS)
    return torch.get_num_threads()
