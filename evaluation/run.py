"""An evaluation run, clip by clip: generate, score, save (the JSON record last, atomically, so a clip with a
record is finished and a stopped run resumes where it was); the clips are split across processes under
`accelerate launch`; at the end the main process summarises every saved clip (evaluation.report)."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shlex
import time
from pathlib import Path

import numpy as np
import torch

from hearing.audio import SAMPLE_RATE, AudioError
from hearing.files import write_json_atomic
from evaluation.cascade import CascadeBaseline
from evaluation.clips import Clip, clip_seed, read_audio, read_clips, stream_clips
from evaluation.report import METRICS_FILE, compute_metrics, make_grid, make_plot, write_report
from generate.model_sets import resolve_models, scorer_vocabulary

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
# Arguments that change what a clip's files contain: a resumed run must match them (--limit may change).
RESULT_KEYS = ("mode", "weights", "data", "shards", "split", "audio_column", "caption_column", "label_column", "models", "pipeline", "base_model", "audio_encoder",
               "num_audio_tokens", "clap_model", "clip_model", "vocabulary", "num_images", "steps", "guidance", "height", "width", "seed")


def weights_fingerprint(*sources) -> str | None:
    """A short fingerprint of the weight files in the local model folders among `sources` (Hub ids are left out):
    each file's name, size and first and last MiB. A run folder records it, so that clips made by other weights
    (a model retrained into the same folder) are never mixed with new ones on resume."""
    digest, found = hashlib.sha1(), False
    for source in sources:
        if not source or not Path(source).is_dir():
            continue
        for path in sorted(p for p in Path(source).rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file()):
            found = True
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(2**20)
                handle.seek(max(size - 2**20, 0))
                tail = handle.read(2**20)
            digest.update(f"{path.relative_to(source)}:{size}:".encode() + head + tail)
    return digest.hexdigest()[:16] if found else None


class IncompleteRunError(RuntimeError):
    """Some clips of the run have no results: running the same command again finishes them."""



def _paths(out: Path, index: int) -> tuple[Path, Path]:
    return out / "clips" / f"clip_{index:05d}.json", out / "clips" / f"clip_{index:05d}.npz"


def is_done(out: Path, index: int) -> bool:
    record, probs = _paths(out, index)
    return record.is_file() and (probs.is_file() or "error" in json.loads(record.read_text()))

def evaluate_clip(clip: Clip, draw, scorer, args, out: Path) -> dict:
    """Generate (with `draw`: the pipeline, or the cascade baseline on it), score and save one clip; the JSON record is
    written last."""
    record_path, probs_path = _paths(out, clip.index)
    base = {"index": clip.index, "name": clip.name, "caption": clip.caption, "seed": clip_seed(args.seed, clip.index)}
    try:
        wave = read_audio(clip.source, args.max_audio_seconds)
    except (AudioError, OSError) as error:  # a bad file is recorded and counted, never the end of the run
        logger.warning("clip %d (%s): %s", clip.index, clip.name, error)
        record = {**base, "error": str(error)}
        write_json_atomic(record_path, record)
        return record
    generator = torch.Generator("cpu").manual_seed(base["seed"])
    images = draw((SAMPLE_RATE, wave), num_images_per_prompt=args.num_images, num_inference_steps=args.steps,
                  guidance_scale=args.guidance, height=args.height, width=args.width, generator=generator,
                  max_audio_seconds=None).images
    files = []
    for k, image in enumerate(images):
        files.append(f"images/clip_{clip.index:05d}_{k}.png")
        image.save(out / files[-1])
    result = scorer.score(wave, images, reference_caption=clip.caption)
    np.savez(probs_path, audio_probs=result.audio_probs.numpy(), image_probs=result.image_probs.numpy())
    entry = scorer.entry
    record = {
        **base, "seconds": round(len(wave) / SAMPLE_RATE, 3), "images": files,
        "agreement": result.agreement.tolist(), "aic": result.aic.tolist(),
        "audio_top": entry(result.audio_top[0]), "image_top": [entry(i) for i in result.image_top],
        "audio_caption_similarity": None if result.audio_caption_similarity is None else float(result.audio_caption_similarity[0]),
        "image_caption_similarity": None if result.image_caption_similarity is None else result.image_caption_similarity.tolist(),
    }
    write_json_atomic(record_path, record)
    return record


def summarize(out: Path, clips: list[Clip], run: dict) -> dict:
    """Read every finished clip of this run from disk and write metrics.json, grid.png, scores.png, report.md."""
    records, probs = [], {}
    for clip in clips:
        record_path, probs_path = _paths(out, clip.index)
        if not record_path.is_file():
            continue
        record = json.loads(record_path.read_text())
        if "error" not in record:
            with np.load(probs_path) as data:
                probs[clip.index] = (data["audio_probs"], data["image_probs"])
        records.append(record)
    missing = len(clips) - len(records)
    if missing:
        raise IncompleteRunError(f"{missing} clips have no results in {out}/clips (a process failed?): run the same command again to finish them")
    metrics, arrays = compute_metrics(records, probs)
    metrics["vocabulary"], metrics["vocabulary_size"] = run["arguments"]["vocabulary"], run["vocabulary_size"]
    write_json_atomic(out / METRICS_FILE, metrics)
    make_grid(out, records)
    make_plot(out, arrays)
    write_report(out, run, metrics, records)
    return metrics


def load_pipeline(args, device: torch.device, scorer):
    """What draws each clip's images: the pipeline, or with --mode cascade the cascade baseline on it (built once)."""
    from generate.pipeline import AudioToImagePipeline

    pipe = AudioToImagePipeline.load(args.pipeline, args.base_model, args.audio_encoder, device, args.dtype,
                                     num_audio_tokens=args.num_audio_tokens, text_mixing=args.mode == "cascade")
    pipe.set_progress_bar_config(disable=True)  # one bar for the run, not one per clip
    return CascadeBaseline(pipe, scorer) if args.mode == "cascade" else pipe


def _check_run(out: Path, run: dict) -> None:
    """A folder holding another run's clips must not be resumed with different settings: mixed results lie."""
    path = out / RUN_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text())["arguments"]
    changed = {k: (previous.get(k), run["arguments"].get(k)) for k in RESULT_KEYS if previous.get(k) != run["arguments"].get(k)}
    if changed:
        details = ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items())
        weights = " (weights: the models' weight files differ from those the run was made with)" if "weights" in changed else ""
        raise ValueError(f"{out} holds a run with other settings ({details}){weights}. Use a new --out, or the same arguments to resume.")


def run(args) -> dict | None:
    """Evaluate every clip not yet finished, then (main process) summarize. Returns the metrics on the main process."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from generate.pipeline import resolve_device_and_dtype
    from scoring.scorer import AudioImageScorer

    # The models, as the CLI and the app choose them; written back so run.json records what was resolved.
    models = resolve_models(args)
    args.steps = models.steps if args.steps is None else args.steps  # the base model's own (generate.model_sets.Sampling)
    for name in ("num_images", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    args.pipeline, args.base_model, args.audio_encoder = models.pipeline, models.base_model, models.audio_encoder
    args.clap_model, args.clip_model = models.clap_model, models.clip_model
    args.vocabulary = scorer_vocabulary(models.clap_model, models.vocabulary)
    args.guidance = models.guidance if args.guidance is None else args.guidance
    # Under accelerate launch / torchrun each process takes a share of the clips (its own GPU, or CPU processes
    # with --device cpu or `accelerate launch --cpu`); PartialState alone ignores the CPU flag, so pass it.
    state = PartialState(cpu=args.device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))
    device = state.device if state.num_processes > 1 else resolve_device_and_dtype(args.device, None)[0]

    streaming = bool(getattr(args, "shards", None)) or getattr(args, "streaming", False)
    if streaming:  # read clip by clip as the run reaches them (below); nothing is listed ahead
        clips = None
        stream = stream_clips(args.data, args.shards, args.split, args.audio_column, args.caption_column, args.label_column)
        stream = itertools.islice(stream, args.limit) if args.limit else stream
    else:
        clips = read_clips(args.data, args.split, args.audio_column, args.caption_column, args.label_column)
        if not clips:
            raise ValueError(f"--data {args.data}: no clips found")
        clips = clips[: args.limit] if args.limit else clips
    out: Path = args.out
    arguments = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items() if k != "argv"}
    arguments["weights"] = weights_fingerprint(args.pipeline, args.audio_encoder, args.clap_model, args.clip_model)
    run_info = {"command": "python -m evaluation " + shlex.join(getattr(args, "argv", [])), "arguments": arguments}

    if state.is_main_process:
        _check_run(out, run_info)
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "clips").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    if clips is not None:
        todo = [c for c in clips if not is_done(out, c.index)]
        state.wait_for_everyone()  # every process lists the same clips before any of them writes a new one
        if state.is_main_process:
            logger.info("%d clips, %d finished earlier, %d to do on %d process(es)", len(clips), len(clips) - len(todo), len(todo), state.num_processes)

    scorer = AudioImageScorer.from_pretrained(args.clap_model, args.clip_model, vocabulary=args.vocabulary, device=device)
    run_info["vocabulary_size"] = len(scorer.vocabulary)
    if state.is_main_process:
        write_json_atomic(out / RUN_FILE, run_info)
    started = time.perf_counter()
    desc = f"evaluate [{state.process_index}]" if state.num_processes > 1 else "evaluate"
    if clips is None:  # a stream: every process reads it in order and takes every num_processes-th clip
        clips, pipe = [], None
        for clip in tqdm(stream, desc=desc, total=args.limit, position=state.process_index, disable=args.quiet, unit="clip"):
            clips.append(Clip(clip.index, clip.name, None, clip.caption))  # kept for the summary, without its sound
            if clip.index % state.num_processes == state.process_index and not is_done(out, clip.index):
                pipe = pipe or load_pipeline(args, device, scorer)
                evaluate_clip(clip, pipe, scorer, args, out)
        if not clips:
            raise ValueError(f"{'--shards' if args.shards else '--data'}: the stream holds no clips")
    else:
        with state.split_between_processes(todo) as mine:
            if mine:
                pipe = load_pipeline(args, device, scorer)
                for clip in tqdm(mine, desc=desc, position=state.process_index, disable=args.quiet, unit="clip"):
                    evaluate_clip(clip, pipe, scorer, args, out)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    metrics = summarize(out, clips, run_info)
    metrics["seconds_this_run"] = round(time.perf_counter() - started, 2)
    return metrics
