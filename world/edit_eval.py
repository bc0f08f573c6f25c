"""Stage: editing a picture with a sound, measured. A rendered scene is changed by a held-out voice speaking a
different caption; world.checker says how often the result shows the spoken attributes, per strength, and how
often it keeps the original's position (what a low strength should preserve).

    python -m world.edit_eval --models models/world --world data/world --out runs/world/edit

For clip k (caption C), the picture shows another scene: each of C's colour, shape and position moved one step
along its list, so every attribute has to change. Writes `<out>/results.json` and `<out>/results.md`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from world.checker import ATTRIBUTES, accuracy
from generate.pipeline import editing_pipeline
from world.evaluate import generators, load_world_pipeline
from world.scenes import COLOURS, POSITIONS, SHAPES, caption, render
from align.data import read_metadata
from world.stage import Log, use_threads, write_json

STRENGTHS = (0.25, 0.5, 0.75, 1.0)


def other_scene(scene: dict) -> dict:
    """Every attribute one step along its list: the picture to change differs from the spoken caption in all three."""
    def shift(names, value):
        names = list(names)
        return names[(names.index(value) + 1) % len(names)]

    moved = {"shape": shift(SHAPES, scene["shape"]), "colour": shift(COLOURS, scene["colour"]), "position": shift(POSITIONS, scene["position"])}
    return {**moved, "caption": caption(moved["shape"], moved["colour"], moved["position"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models/world")
    parser.add_argument("--world", default="data/world")
    parser.add_argument("--out", default="runs/world/edit")
    parser.add_argument("--split", default="test", help="the held-out clips under <world>/audio/ (test: voices; test_engine: an engine)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    use_threads(args.threads)
    out, clips = Path(args.out), Path(args.world) / "audio" / args.split
    log = Log(out / "log.txt")
    rows = read_metadata(clips)[: args.limit]
    originals = [other_scene(r) for r in rows]
    rng = np.random.default_rng(args.seed)
    pictures = [render(o["shape"], o["colour"], o["position"], rng) for o in originals]
    pipe = editing_pipeline(load_world_pipeline(args.models))
    pipe.set_progress_bar_config(disable=True)
    results = {"settings": vars(args) | {"clips": len(rows)}, "strengths": {}}
    for strength in STRENGTHS:
        images = [pipe(str(clips / r["file_name"]), image=picture, strength=strength, num_inference_steps=args.steps,
                       guidance_scale=args.guidance, generator=generators(range(args.seed + k, args.seed + k + 1))).images[0]
                  for k, (r, picture) in enumerate(zip(rows, pictures))]
        spoken, kept = accuracy(images, rows), accuracy(images, originals)
        results["strengths"][str(strength)] = {"spoken": spoken, "original_position_kept": kept["position"]}
        log(f"strength {strength}: shows the spoken caption {spoken}; keeps the original position {kept['position']:.3f}")
    write_json(out / "results.json", results)
    lines = ["| strength | spoken colour | spoken shape | spoken position | all three | original position kept |", "|---|---|---|---|---|---|"]
    for strength, r in results["strengths"].items():
        lines.append(f"| {strength} | " + " | ".join(f"{100 * r['spoken'][k]:.1f} %" for k in (*ATTRIBUTES, "all"))
                     + f" | {100 * r['original_position_kept']:.1f} % |")
    (out / "results.md").write_text("\n".join(lines) + f"\n\n{len(rows)} clips of <world>/audio/{args.split}, one image each per strength.\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
