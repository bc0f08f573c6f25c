"""What an evaluation run reports, from the clips it saved: metrics.json's numbers (scoring.metrics over every
clip × image), a grid of clips and their images, a plot of the scores, and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scoring.metrics import agreement_matrix, rank_scores

METRICS_FILE, REPORT_FILE, GRID_FILE, PLOT_FILE = "metrics.json", "report.md", "grid.png", "scores.png"


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


def fmt(value, digits=3) -> str:
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
        f"| AIC accuracy | {fmt(m['aic_accuracy'])} | share of images whose top entry (CLIP) is the sound's (CLAP) |",
        f"| mean agreement | {fmt(m['mean_agreement'])} ± {fmt(m['std_agreement'])} | 1 − JSD₂ of the sound's and its image's distributions |",
        f"| mean agreement, other clips' images | {fmt(m['mean_agreement_other_clips'])} | the same for mismatched pairs: the baseline |",
        f"| rank score | {fmt(m['rank_score'], 1)} | 100 × share of other clips' images scoring below the clip's own (50 = chance) |",
        f"| audio–caption similarity (CLAP) | {fmt(m['audio_caption_similarity'])} | cosine of the sound and its reference caption |",
        f"| image–caption similarity (CLIP) | {fmt(m['image_caption_similarity'])} | cosine of the image and the sound's reference caption |",
        "", f"![grid]({GRID_FILE})", "", f"![scores]({PLOT_FILE})", "",
        "| # | clip | caption | CLAP top | CLIP top (per image) | agreement | rank score |", "|---|---|---|---|---|---|---|",
    ]
    for r in records[:max_rows]:
        if "error" in r:
            lines.append(f"| {r['index']} | {r['name']} | {r['caption'] or ''} | error: {r['error'][:60]} | | | |")
            continue
        tops = ", ".join(f"**{t}**" if a else t for t, a in zip(r["image_top"], r["aic"]))
        lines.append(f"| {r['index']} | {r['name']} | {r['caption'] or ''} | {r['audio_top']} | {tops} | "
                     f"{', '.join(f'{a:.3f}' for a in r['agreement'])} | {fmt(r.get('rank_score'), 1)} |")
    if len(records) > max_rows:
        lines.append(f"\n{len(records) - max_rows} more clips in clips/*.json.")
    (out / REPORT_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / REPORT_FILE


COMPARED = ("aic_accuracy", "mean_agreement", "mean_agreement_other_clips", "rank_score", "audio_caption_similarity", "image_caption_similarity")


def write_comparison(out: Path, results: dict[str, dict]) -> Path:
    """comparison.md: the metrics of runs on the same clips and seeds (e.g. direct and cascade), a column each."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in COMPARED:
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(fmt(results[n].get(key), 1 if key == "rank_score" else 3) for n in names) + " |")
    path = out / "comparison.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
