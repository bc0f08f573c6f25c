"""Evaluation run: generate images for every clip of a data set, score them against their sounds, report.

    python -m generate.evaluate --data data/synthetic --out runs/synthetic --pipeline saved_pipeline/ --steps 20
    python -m generate.evaluate --data user/esc50-test --split test --out runs/esc50 --num-images 2 --limit 200
    accelerate launch -m generate.evaluate --data ... --out runs/NAME      # clips split across GPUs

For each clip: images (`images/clip_00012_0.png`), then its scores (`clips/clip_00012.json`, and the
vocabulary distributions in `clips/clip_00012.npz`). The JSON is written last, atomically, so a clip with a
JSON is finished: a run stopped for any reason picks up where it was when started again with the same
arguments (`--limit` may grow). Each clip's noise comes from `--seed` and the clip's index, so a resumed run
makes the same images as an uninterrupted one. Images come from the clip's first encoder window (~6 s, the
pipeline's default); the scores hear the whole clip (CLAP's 10 s windows, averaged).

At the end (main process): `metrics.json`, `report.md`, `grid.png` (clips × images) and `scores.png`.
Metrics (see generate.scoring for the scores themselves):
- `aic_accuracy`: share of images whose top vocabulary entry (CLIP) is the clip's top entry (CLAP);
- `mean_agreement`: mean 1 − JSD₂ between each clip's audio distribution and its images';
- `rank_score`: AIS-style, 100 × the share of other clips' images that agree less with a clip's audio than its
  own image does (ties half), averaged over clips; 50 is chance, 100 perfect;
- `audio_caption_similarity` / `image_caption_similarity`: CLAP and CLIP cosine with the reference caption.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from align.audio import SAMPLE_RATE, AudioError, load_audio
from generate.scoring import DEFAULT_CLAP, DEFAULT_CLIP, agreement_matrix, rank_scores

logger = logging.getLogger(__name__)

RUN_FILE, METRICS_FILE, REPORT_FILE, GRID_FILE, PLOT_FILE = "run.json", "metrics.json", "report.md", "grid.png", "scores.png"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a", ".webm")
# Arguments that change what a clip's files contain: a resumed run must match them (--limit may change).
RESULT_KEYS = ("data", "split", "audio_column", "caption_column", "label_column", "pipeline", "base_model", "audio_encoder",
               "num_audio_tokens", "clap_model", "clip_model", "vocabulary", "num_images", "steps", "guidance", "height", "width", "seed")


class IncompleteRunError(RuntimeError):
    """Some clips of the run have no results: running the same command again finishes them."""


@dataclass
class Clip:
    index: int
    name: str
    source: object  # a path, or a function giving a Hub row's {"bytes", "path"}
    caption: str | None


# --------------------------------------------------------------------------------------------------------------
# Data


def _read_audio(source) -> np.ndarray:
    if callable(source):  # a Hub row, fetched only now
        source = source()
    return load_audio(source, max_seconds=None)


def _unique(sources, captions, keys) -> list[tuple[object, str | None, object]]:
    """align.data gives one pair per caption; evaluation wants each clip once (with its first caption)."""
    seen, out = set(), []
    for source, caption, key in zip(sources, captions, keys):
        if key not in seen:
            seen.add(key)
            out.append((source, caption, key))
    return out


def read_clips(data: str, split: str = "test", audio_column: str | None = None, caption_column: str | None = None,
               label_column: str | None = None) -> list[Clip]:
    """Clips from a local audiofolder (`data/split/` or `data/`, metadata.jsonl/csv; or plain audio files) or a Hub id.

    Records are read with align.data (captions from a caption column, or made from labels); data with neither
    is read as audio only, and the caption similarities are left out.
    """
    from align.data import (CAPTION_COLUMNS, LABEL_COLUMNS, METADATA_FILES, HubAudioColumn, pairs_from_folder, pairs_from_hub_dataset,
                            read_metadata)

    named = bool(caption_column or label_column)
    path = Path(data)
    if path.exists():
        folder = path / split if (path / split).is_dir() else path
        if not folder.is_dir():
            raise FileNotFoundError(f"--data {path}: not a folder. Give an audiofolder (metadata.jsonl + audio files) or a Hub dataset id.")
        if not any((folder / name).is_file() for name in METADATA_FILES):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{folder}: no metadata.jsonl/metadata.csv and no audio files ({', '.join(AUDIO_SUFFIXES)})")
            return [Clip(i, p.name, str(p), None) for i, p in enumerate(files)]
        column = audio_column or "file_name"
        rows = read_metadata(folder)
        if named or any(c in rows[0] for c in CAPTION_COLUMNS + LABEL_COLUMNS):
            pairs = pairs_from_folder(folder, column, caption_column=caption_column, label_column=label_column)
            items = _unique(pairs.sources, pairs.captions, pairs.sources)
        else:
            items = [(str(folder / r[column]), None, None) for r in rows if r.get(column)]
        return [Clip(i, os.path.relpath(s, folder), s, c) for i, (s, c, _) in enumerate(items)]

    from datasets import Audio, load_dataset

    try:
        dataset = load_dataset(data, split=split)
    except Exception as error:  # offline, unknown id, unknown split: say which and what to do
        raise FileNotFoundError(f"--data {data!r} is no local folder, and loading it from the Hub (split {split!r}) failed: {error}") from error
    column = audio_column or "audio"
    if named or any(c in dataset.column_names for c in CAPTION_COLUMNS + LABEL_COLUMNS):
        pairs = pairs_from_hub_dataset(dataset, column, caption_column=caption_column, label_column=label_column, name=f"{data}[{split}]")
        audio = pairs.sources  # lazy: a row's audio is read when its clip is evaluated, not all at once here
        positions = _unique(range(len(pairs)), pairs.captions, audio.rows)
        return [Clip(i, f"{data}[{split}]#{row}", partial(audio.__getitem__, p), c) for i, (p, c, row) in enumerate(positions)]
    if column not in dataset.column_names:
        raise ValueError(f"the dataset has no audio column {column!r} (it has {dataset.column_names}); name it with --audio-column")
    audio = HubAudioColumn(dataset.cast_column(column, Audio(decode=False)), column, list(range(len(dataset))))
    return [Clip(i, f"{data}[{split}]#{i}", partial(audio.__getitem__, i), None) for i in range(len(dataset))]


def clip_seed(seed: int, index: int) -> int:
    """The noise seed of clip `index`: from the run's seed and the index alone, so resuming changes nothing."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------------------
# Per clip


def _paths(out: Path, index: int) -> tuple[Path, Path]:
    return out / "clips" / f"clip_{index:05d}.json", out / "clips" / f"clip_{index:05d}.npz"


def is_done(out: Path, index: int) -> bool:
    record, probs = _paths(out, index)
    return record.is_file() and (probs.is_file() or "error" in json.loads(record.read_text()))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)  # atomic: a JSON on disk is always a whole one


def evaluate_clip(clip: Clip, pipe, scorer, args, out: Path) -> dict:
    """Generate, score and save one clip; the JSON record is written last."""
    record_path, probs_path = _paths(out, clip.index)
    base = {"index": clip.index, "name": clip.name, "caption": clip.caption, "seed": clip_seed(args.seed, clip.index)}
    try:
        wave = _read_audio(clip.source)
    except (AudioError, OSError) as error:  # a bad file is recorded and counted, never the end of the run
        logger.warning("clip %d (%s): %s", clip.index, clip.name, error)
        record = {**base, "error": str(error)}
        _write_json(record_path, record)
        return record
    generator = torch.Generator("cpu").manual_seed(base["seed"])
    images = pipe((SAMPLE_RATE, wave), num_images_per_prompt=args.num_images, num_inference_steps=args.steps,
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
    _write_json(record_path, record)
    return record


# --------------------------------------------------------------------------------------------------------------
# Summary


def compute_metrics(records: list[dict], probs: dict[int, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """metrics.json's numbers, and what the plots need (the clips × images agreement matrix and its owners)."""
    good = [r for r in records if "error" not in r]
    if not good:
        raise ValueError("no clip could be evaluated (every audio failed to load): check the data")
    audio = torch.from_numpy(np.stack([probs[r["index"]][0] for r in good]))
    image_rows = [torch.from_numpy(probs[r["index"]][1]) for r in good]
    owner = torch.cat([torch.full((len(rows),), c) for c, rows in enumerate(image_rows)])
    matrix = agreement_matrix(audio, torch.cat(image_rows))
    ranks = rank_scores(matrix, owner)
    own = matrix[owner, torch.arange(len(owner))]
    other = matrix[owner[None, :] != torch.arange(len(good))[:, None]]
    aic = np.concatenate([r["aic"] for r in good]).astype(float)
    metrics = {
        "num_clips": len(records), "num_scored_clips": len(good), "num_images": int(len(owner)),
        "failed_clips": [{"index": r["index"], "name": r["name"], "error": r["error"]} for r in records if "error" in r],
        "aic_accuracy": float(aic.mean()),
        "mean_agreement": float(own.mean()), "std_agreement": float(own.std(unbiased=False)),
        "mean_agreement_other_clips": float(other.mean()) if other.numel() else None,  # the same score for mismatched pairs: the baseline
        "rank_score": float(np.nanmean(ranks.numpy())) if not torch.isnan(ranks).all() else None,
    }
    for key in ("audio_caption_similarity", "image_caption_similarity"):
        values = [v for r in good if r.get(key) is not None for v in np.atleast_1d(r[key])]
        metrics[key] = float(np.mean(values)) if values else None
    for r, rank in zip(good, ranks.tolist()):
        r["rank_score"] = None if np.isnan(rank) else rank
    return metrics, {"own": own.numpy(), "other": other.numpy(), "ranks": ranks.numpy()}


def make_grid(out: Path, records: list[dict], max_clips: int = 12, cell: int = 160) -> Path:
    """A PNG of clips (rows) × their images (columns), each labelled with its agreement and top entry."""
    from PIL import Image, ImageDraw, ImageFont

    shown = [r for r in records if "error" not in r][:max_clips]
    columns = max(len(r["images"]) for r in shown)
    label_width, text_height = 260, 30
    grid = Image.new("RGB", (label_width + columns * cell, len(shown) * (cell + text_height)), "white")
    draw, font = ImageDraw.Draw(grid), ImageFont.load_default()
    for row, record in enumerate(shown):
        top = row * (cell + text_height)
        caption = record["caption"] or record["name"]
        lines = [f"#{record['index']} {record['name']}"[:40], caption[:40], caption[40:80], f"CLAP: {record['audio_top']}"[:40]]
        draw.multiline_text((6, top + 6), "\n".join(line for line in lines if line), fill="black", font=font)
        for k, file in enumerate(record["images"]):
            with Image.open(out / file) as image:
                # NEAREST keeps small images' pixels visible instead of a blur
                thumb = image.convert("RGB").resize((cell, cell), Image.NEAREST if image.width < cell else Image.BICUBIC)
            grid.paste(thumb, (label_width + k * cell, top))
            text = f"{record['agreement'][k]:.3f} {'AIC ' if record['aic'][k] else ''}{record['image_top'][k]}"
            draw.text((label_width + k * cell + 4, top + cell + 4), text[:28], fill="darkgreen" if record["aic"][k] else "black", font=font)
    grid.save(out / GRID_FILE)
    return out / GRID_FILE


def make_plot(out: Path, arrays: dict) -> Path:
    """Histogram of the agreement of clips with their own images against other clips' images, and of rank scores."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    both = np.concatenate([arrays["own"], arrays["other"]])
    # bins over the scores' own range: with a large vocabulary they often sit in a narrow band of [0, 1]
    low, high = float(both.min()), float(both.max())
    bins = np.linspace(low - 1e-3, high + 1e-3, 41)
    if arrays["other"].size:
        left.hist(arrays["other"], bins=bins, alpha=0.6, density=True, label="other clips' images")
    left.hist(arrays["own"], bins=bins, alpha=0.6, density=True, label="own images")
    left.set(xlabel="agreement (1 − JSD₂)", ylabel="density", title="audio–image agreement")
    left.legend()
    ranks = arrays["ranks"][~np.isnan(arrays["ranks"])]
    right.hist(ranks, bins=np.linspace(0, 100, 21), color="tab:green")
    right.axvline(50, color="grey", linestyle="--", label="chance")
    right.set(xlabel="rank score", ylabel="clips", title="per-clip rank score")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / PLOT_FILE, dpi=100)
    plt.close(fig)
    return out / PLOT_FILE


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_report(out: Path, run: dict, metrics: dict, records: list[dict], max_rows: int = 100) -> Path:
    m = metrics
    lines = [
        f"# Evaluation: {out.name}", "",
        f"`{run['command']}`", "",
        f"{m['num_scored_clips']} clips scored ({len(m['failed_clips'])} failed), {m['num_images']} images; vocabulary "
        f"`{run['arguments']['vocabulary']}` ({run['vocabulary_size']} entries); CLAP `{run['arguments']['clap_model']}`, "
        f"CLIP `{run['arguments']['clip_model']}`.", "",
        "| metric | value | meaning |", "|---|---|---|",
        f"| AIC accuracy | {_fmt(m['aic_accuracy'])} | share of images whose top entry (CLIP) is the sound's (CLAP) |",
        f"| mean agreement | {_fmt(m['mean_agreement'])} ± {_fmt(m['std_agreement'])} | 1 − JSD₂ of the sound's and its image's distributions |",
        f"| mean agreement, other clips' images | {_fmt(m['mean_agreement_other_clips'])} | the same for mismatched pairs: the baseline |",
        f"| rank score | {_fmt(m['rank_score'], 1)} | 100 × share of other clips' images scoring below the clip's own (50 = chance) |",
        f"| audio–caption similarity (CLAP) | {_fmt(m['audio_caption_similarity'])} | cosine of the sound and its reference caption |",
        f"| image–caption similarity (CLIP) | {_fmt(m['image_caption_similarity'])} | cosine of the image and the sound's reference caption |",
        "", f"![grid]({GRID_FILE})", "", f"![scores]({PLOT_FILE})", "",
        "| # | clip | caption | CLAP top | CLIP top (per image) | agreement | rank score |", "|---|---|---|---|---|---|---|",
    ]
    for r in records[:max_rows]:
        if "error" in r:
            lines.append(f"| {r['index']} | {r['name']} | {r['caption'] or ''} | error: {r['error'][:60]} | | | |")
            continue
        tops = ", ".join(f"**{t}**" if a else t for t, a in zip(r["image_top"], r["aic"]))
        lines.append(f"| {r['index']} | {r['name']} | {r['caption'] or ''} | {r['audio_top']} | {tops} | "
                     f"{', '.join(f'{a:.3f}' for a in r['agreement'])} | {_fmt(r.get('rank_score'), 1)} |")
    if len(records) > max_rows:
        lines.append(f"\n{len(records) - max_rows} more clips in clips/*.json.")
    (out / REPORT_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / REPORT_FILE


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
    _write_json(out / METRICS_FILE, metrics)
    make_grid(out, records)
    make_plot(out, arrays)
    write_report(out, run, metrics, records)
    return metrics


# --------------------------------------------------------------------------------------------------------------
# Models and the run


def load_pipeline(args, device: torch.device):
    from generate.pipeline import AudioToImagePipeline

    pipe = AudioToImagePipeline.load(args.pipeline or None, args.base_model, args.audio_encoder, device, args.dtype,
                                     num_audio_tokens=args.num_audio_tokens)
    pipe.set_progress_bar_config(disable=True)  # one bar for the run, not one per clip
    return pipe


def build_parser() -> argparse.ArgumentParser:
    from generate.pipeline import DEFAULT_AUDIO_ENCODER, DEFAULT_BASE_MODEL

    parser = argparse.ArgumentParser(
        prog="python -m generate.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data and output")
    data.add_argument("--data", required=True, help="local audiofolder (metadata.jsonl with file_name, caption) or Hub dataset id")
    data.add_argument("--split", default="test", help="split: a subfolder of an audiofolder (used if present) or a Hub split (default: test)")
    data.add_argument("--audio-column", default=None, help="audio column (default: file_name in an audiofolder, audio on the Hub)")
    data.add_argument("--caption-column", default=None, help="caption column (default: the first of caption, text, description)")
    data.add_argument("--label-column", default=None, help="label column to make captions from, when there is no caption column")
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first K clips (a later run without it resumes and adds the rest)")
    data.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME (created; reused to resume)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--pipeline", default=None, help="a saved AudioToImagePipeline folder; replaces --base-model/--audio-encoder")
    gen.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="Stable Diffusion 2.1 base: Hub id or local folder (default: %(default)s)")
    gen.add_argument("--audio-encoder", default=DEFAULT_AUDIO_ENCODER, help="audio prompt encoder: Hub id or local folder (default: %(default)s)")
    gen.add_argument("--num-audio-tokens", type=int, default=None, help="window of a plain Wav2Vec2BertModel encoder (the original: 47)")
    gen.add_argument("--num-images", type=int, default=1, help="images per clip (default: 1)")
    gen.add_argument("--steps", type=int, default=25, help="denoising steps (default: 25)")
    gen.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default: 7.5)")
    gen.add_argument("--height", type=int, default=None, help="image height, a multiple of 8 (default: the UNet's; 768 for SD 2.1)")
    gen.add_argument("--width", type=int, default=None, help="image width, a multiple of 8 (default: the UNet's)")
    gen.add_argument("--seed", type=int, default=0, help="run seed; clip i's noise is seeded from (seed, i) (default: 0)")
    score = parser.add_argument_group("scoring")
    score.add_argument("--clap-model", default=DEFAULT_CLAP, help="CLAP: Hub id or local folder (default: %(default)s)")
    score.add_argument("--clip-model", default=DEFAULT_CLIP, help="CLIP: Hub id or local folder (default: %(default)s)")
    score.add_argument("--vocabulary", default="esc50", help="esc50, audioset, or a text file of words/captions, one a line (default: esc50)")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="auto", help="cuda, mps, cpu or auto; under accelerate launch each process uses its own GPU")
    hw.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="pipeline dtype; auto: fp16 on GPU, fp32 on CPU")
    hw.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check_run(out: Path, run: dict) -> None:
    """A folder holding another run's clips must not be resumed with different settings: mixed results lie."""
    path = out / RUN_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text())["arguments"]
    changed = {k: (previous.get(k), run["arguments"].get(k)) for k in RESULT_KEYS if previous.get(k) != run["arguments"].get(k)}
    if changed:
        details = ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{out} holds a run with other settings ({details}). Use a new --out, or the same arguments to resume.")


def run(args) -> dict | None:
    """Evaluate every clip not yet finished, then (main process) summarize. Returns the metrics on the main process."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from generate.pipeline import resolve_device_and_dtype
    from generate.scoring import AudioImageScorer

    for name in ("num_images", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    # Under accelerate launch / torchrun each process takes a share of the clips (its own GPU, or CPU processes
    # with --device cpu or `accelerate launch --cpu`); PartialState alone ignores the CPU flag, so pass it.
    state = PartialState(cpu=args.device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))
    device = state.device if state.num_processes > 1 else resolve_device_and_dtype(args.device, None)[0]

    clips = read_clips(args.data, args.split, args.audio_column, args.caption_column, args.label_column)
    if not clips:
        raise ValueError(f"--data {args.data}: no clips found")
    clips = clips[: args.limit] if args.limit else clips
    out: Path = args.out
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "argv"}
    run_info = {"command": "python -m generate.evaluate " + shlex.join(getattr(args, "argv", [])), "arguments": arguments}

    if state.is_main_process:
        _check_run(out, run_info)
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "clips").mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    todo = [c for c in clips if not is_done(out, c.index)]
    state.wait_for_everyone()  # every process lists the same clips before any of them writes a new one
    if state.is_main_process:
        logger.info("%d clips, %d finished earlier, %d to do on %d process(es)", len(clips), len(clips) - len(todo), len(todo), state.num_processes)

    scorer = AudioImageScorer.from_pretrained(args.clap_model, args.clip_model, vocabulary=args.vocabulary, device=device)
    run_info["vocabulary_size"] = len(scorer.vocabulary)
    if state.is_main_process:
        _write_json(out / RUN_FILE, run_info)
    started = time.perf_counter()
    with state.split_between_processes(todo) as mine:
        if mine:
            pipe = load_pipeline(args, device)
            bar = tqdm(mine, desc=f"evaluate [{state.process_index}]" if state.num_processes > 1 else "evaluate",
                       position=state.process_index, disable=args.quiet, unit="clip")
            for clip in bar:
                evaluate_clip(clip, pipe, scorer, args, out)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    metrics = summarize(out, clips, run_info)
    metrics["seconds_this_run"] = round(time.perf_counter() - started, 2)
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        metrics = run(args)
    except (AudioError, ValueError, OSError, IncompleteRunError) as error:  # named problems: the message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    if metrics is not None:
        print(f"AIC accuracy {metrics['aic_accuracy']:.3f}, mean agreement {metrics['mean_agreement']:.3f}, "
              f"rank score {_fmt(metrics['rank_score'], 1)} over {metrics['num_scored_clips']} clips: {args.out / REPORT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
