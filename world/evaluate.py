"""Stage: does a spoken caption become a fitting picture? Measured end to end, judged without any trained model.

    python -m world.evaluate --models models/world --world data/world --out runs/world/eval

On the held-out voices (data/world/audio/test: voices never heard in training, of the engines trained on) and
on the held-out engine (data/world/audio/test_engine: an engine never heard at all), and, where
`world.build` wrote it, on engines outside the world's list that no stage uses
(data/world/audio/test_unheard: RHVoice, SAM), every clip goes through
the shipped pipeline (sound → audio encoder → UNet → VAE) and the model-free checker (world.checker) names
the colour, shape and position of the picture, reported overall, per engine and per voice. Next to it, with
the same UNet, VAE and sampler (on the held-out voices' captions and seeds):
- text → image, each caption encoded by the world's CLIP text encoder: the upper bound for audio, which can
  at best reproduce those states (diffusers' StableDiffusionPipeline on the same components);
- random conditions, Gaussian with the per-position mean and spread of the real caption states: the floor;
- the cascade baseline (evaluation.cascade): the shipped scorer's CLAP names the nearest of the world's captions and
  the text path draws it, so it is as good as CLAP's hearing.
Then the CLAP-scored evaluation of the project (`python -m evaluation`) runs on the same clips with the shipped
scorer.

Everyday sounds (world.sounds): the held-out recordings of trained sources (audio/test_sound_recordings) and the
recordings of held-out source packages (audio/test_sound_sources) go through the same pipeline, and the checker
names the sound class the picture shows; per class and overall, next to text → image for the same captions, the
cascade (the scorer's CLAP names the nearest caption, text → image draws it) and random conditions.
Writes `<out>/results.json` and `<out>/results.md` (the tables for world/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from hearing.text_states import encode_captions
from evaluation.cascade import CascadeBaseline
from generate.pipeline import AudioToImagePipeline
from world.checker import ATTRIBUTES, accuracy
from world.scenes import COLOURS, POSITIONS, SHAPES, SOUND_CLASSES, world_scenes
from align.data import read_metadata
from world.stage import Log, use_threads, write_json

CHANCE = {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "position": 1 / len(POSITIONS)}
HARD_PARTS = {"spoken_carrier": "test_carrier", "spoken_music_room": "test_music_room", "spoken_pitch": "test_pitch"}  # world.build's
HARD_NAMES = {"spoken_carrier": "inside a longer request, in words no stage heard (held-out voices)", "spoken_music_room": "music playing in a reverberant room (held-out voices)",
              "spoken_pitch": "the voice pitched 3-7 semitones up or down (held-out voices)"}
SOUND_PARTS = {"sound_recordings": ("test_sound_recordings", "held-out recordings of trained sources"),
               "sound_sources": ("test_sound_sources", "recordings of held-out sources (packages no stage used)")}


def judge(images, scenes: list[dict]) -> dict:
    """The checker's accuracy of `images` against the scenes they should show, and how many images it judged."""
    return accuracy(images, scenes) | {"images": len(scenes)}


def generators(seeds: range) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def load_world_pipeline(models: str | Path) -> AudioToImagePipeline:
    """The shipped pipeline in float32 (stored as float16; CPUs run float16 far slower)."""
    return AudioToImagePipeline.from_pretrained(Path(models) / "pipeline", dtype=torch.float32)


def text_pipeline(pipe: AudioToImagePipeline) -> StableDiffusionPipeline:
    """diffusers' own text-to-image pipeline over the same VAE, text encoder, UNet and sampler."""
    return StableDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                                   scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@torch.no_grad()
def spoken_images(pipe, paths: list[Path], steps: int, guidance: float, seed: int, batch: int = 48) -> list:
    """The pipeline's images for the clips, one each, seeded by position (`pipe` may be the cascade baseline, called alike)."""
    images = []
    for start in range(0, len(paths), batch):
        chunk = [str(p) for p in paths[start : start + batch]]
        images += pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, batch_size=None,
                       generator=generators(range(seed + start, seed + start + len(chunk)))).images
    return images


@torch.no_grad()
def condition_images(sd: StableDiffusionPipeline, conditions: torch.Tensor, empty: torch.Tensor, steps: int, guidance: float, seed: int, batch: int = 48) -> list:
    images = []
    for start in range(0, len(conditions), batch):
        chunk = conditions[start : start + batch]
        images += sd(prompt_embeds=chunk, negative_prompt_embeds=empty.expand_as(chunk), num_inference_steps=steps, guidance_scale=guidance,
                     generator=generators(range(seed + start, seed + start + len(chunk)))).images
    return images


def _percentages(r: dict) -> str:
    return " | ".join(f"{100 * r[k]:.1f} %" for k in (*ATTRIBUTES, "all"))


def markdown(results: dict) -> str:
    engine = results.get("settings", {}).get("held_out_engine")
    rows = [("spoken caption → image (held-out voices of trained engines)", results["spoken"]),
            *([(f"spoken caption → image (the engine never heard: {engine})", results["spoken_engine"])] if "spoken_engine" in results else []),
            *([("spoken caption → image (engines outside the named list, used by no stage: "
                + ", ".join(results["settings"].get("unheard_engines", [])) + ")", results["spoken_unheard"])] if "spoken_unheard" in results else []),
            *((f"spoken caption → image, said {HARD_NAMES[key]}", results[key]) for key in HARD_PARTS if key in results),
            *([("cascade baseline: CLAP's nearest caption → text → image (held-out voices)", results["cascade"])] if "cascade" in results else []),
            *([(f"cascade baseline ({engine})", results["cascade_engine"])] if "cascade_engine" in results else []),
            ("text → image, same UNet (upper bound)", results["text"]),
            ("random condition, same UNet (floor)", results["random"]),
            ("chance", {**CHANCE, "all": float(np.prod(list(CHANCE.values())))})]
    lines = ["| condition | colour | shape | position | all three |", "|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {_percentages(r)} |")
    settings = results["settings"]
    engine_images = results.get("spoken_engine", {}).get("images", 0)
    unheard = f", {results['spoken_unheard']['images']} of engines no stage uses" if "spoken_unheard" in results else ""
    text = "\n".join(lines) + (
        f"\n\n{results['spoken']['images']} clips of {len(settings['test_voices'])} held-out voices, {engine_images} of the held-out "
        f"engine{unheard} ({settings['captions']} captions), one image each; {settings['steps']} DPM-Solver++ steps, guidance {settings['guidance']}; "
        "judged by `world.checker` (pixel statistics and geometry, no trained model).\n")
    for title, key in (("engine", "per_engine"), ("voice", "per_voice")):
        table = results.get(key, {})
        if table:
            text += (f"\nSpoken caption → image, per {title}:\n\n| {title} | clips | colour | shape | position | all three |\n|---|---|---|---|---|---|\n"
                     + "".join(f"| {name} | {r['images']} | {_percentages(r)} |\n" for name, r in table.items()))
    clap = results.get("clap_scored")
    if clap:
        text += ("\nCLAP-scored evaluation (`python -m evaluation`, shipped scorer, vocabulary = every caption of the world) on the same clips: "
                 + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in clap.items()) + ".\n")
    return text


def random_conditions(pipe, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` Gaussian conditions with the per-position mean and spread of every caption's states (BOS kept), and the
    empty caption's states: the floor every condition is measured against."""
    captions = encode_captions([s["caption"] for s in world_scenes()], pipe.text_encoder, pipe.tokenizer)
    empty = encode_captions([""], pipe.text_encoder, pipe.tokenizer)
    noise = torch.randn((count, *captions.shape[1:]), generator=torch.Generator().manual_seed(seed))
    random = captions.mean(0) + captions.std(0) * noise
    random[:, 0] = empty[0, 0]  # BOS is the same for every caption: keep it
    return random, empty


def evaluate_sounds(pipe, sd, scorer, world: Path, args, log) -> dict:
    """Sound → picture on the held-out recordings (SOUND_PARTS), per class and overall, with text → image, the cascade
    and random conditions on the same captions and seeds."""
    results = {}
    for key, (folder_name, name) in SOUND_PARTS.items():
        folder = world / "audio" / folder_name
        if not (folder / "metadata.jsonl").exists():
            continue
        rows = read_metadata(folder)[: args.limit]
        images = spoken_images(pipe, [folder / r["file_name"] for r in rows], args.steps, args.guidance, args.seed)
        states = encode_captions([r["caption"] for r in rows], pipe.text_encoder, pipe.tokenizer)
        random, empty = random_conditions(pipe, len(rows), args.seed)
        part = {"direct": judge(images, rows),
                "text": judge(condition_images(sd, states, empty, args.steps, args.guidance, args.seed), rows),
                "random": judge(condition_images(sd, random, empty, args.steps, args.guidance, args.seed), rows)}
        if scorer is not None:
            cascade = spoken_images(CascadeBaseline(pipe, scorer), [folder / r["file_name"] for r in rows], args.steps, args.guidance, args.seed)
            part["cascade"] = judge(cascade, rows)
        part["per_class"] = {c.name: judge([im for im, r in zip(images, rows) if r["sound"] == c.name], [r for r in rows if r["sound"] == c.name])
                             for c in SOUND_CLASSES if any(r["sound"] == c.name for r in rows)}
        part["sources"] = sorted({r["package"] for r in rows})
        results[key] = part
        log(f"sound → image ({name}): direct {part['direct']['all']:.3f}, text {part['text']['all']:.3f}, "
            f"random {part['random']['all']:.3f}" + (f", cascade {part['cascade']['all']:.3f}" if "cascade" in part else ""))
    return results


def sound_markdown(results: dict) -> str:
    parts = [(SOUND_PARTS[key][1], results[key]) for key in SOUND_PARTS if key in results]
    if not parts:
        return ""
    lines = ["| condition | " + " | ".join(name for name, _ in parts) + " |", "|---|" + "---|" * len(parts)]
    for label, key in (("sound → image (direct)", "direct"), ("cascade baseline: CLAP's nearest caption → text → image", "cascade"),
                       ("text → image, same UNet (upper bound)", "text"), ("random condition, same UNet (floor)", "random")):
        if all(key in part for _, part in parts):
            lines.append(f"| {label} | " + " | ".join(f"{100 * part[key]['all']:.1f} % ({part[key]['images']} clips)" for _, part in parts) + " |")
    lines.append("| chance | " + " | ".join(f"{100 / len(SOUND_CLASSES):.1f} %" for _ in parts) + " |")
    text = "\n".join(lines) + "\n\nSound → image per class (right picture, clips):\n\n| class | " + " | ".join(name for name, _ in parts) + " |\n|---|" + "---|" * len(parts) + "\n"
    for c in SOUND_CLASSES:
        cells = [f"{100 * part['per_class'][c.name]['all']:.0f} % ({part['per_class'][c.name]['images']})" if c.name in part["per_class"] else "–"
                 for _, part in parts]
        text += f"| {c.caption} | " + " | ".join(cells) + " |\n"
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models/world", help="the shipped pipeline/ and scorer/")
    parser.add_argument("--world", default="data/world")
    parser.add_argument("--out", default="runs/world/eval")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (the app's default)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance (3 beat SD's 7.5 in this world)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out clips (smoke runs)")
    parser.add_argument("--no-clap", dest="clap", action="store_false", help="skip the CLAP-scored evaluation")
    parser.add_argument("--no-cascade", dest="cascade", action="store_false", help="skip the cascade baseline")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    use_threads(args.threads)
    out, world = Path(args.out), Path(args.world)
    log = Log(out / "log.txt")
    manifest = json.loads((world / "world.json").read_text())
    test, test_engine, test_unheard = (world / "audio" / part for part in ("test", "test_engine", "test_unheard"))
    rows = read_metadata(test)[: args.limit]
    engine_rows, unheard_rows = (read_metadata(folder)[: args.limit] if (folder / "metadata.jsonl").exists() else []
                                 for folder in (test_engine, test_unheard))  # test_unheard: where its engines were installed
    pipe = load_world_pipeline(args.models)
    pipe.set_progress_bar_config(disable=True)
    sd = text_pipeline(pipe)
    sd.set_progress_bar_config(disable=True)
    results = {"settings": {"steps": args.steps, "guidance": args.guidance, "seed": args.seed, "test_voices": manifest["test_voices"],
                            "held_out_engine": manifest.get("held_out_engine"), "captions": len({r["caption"] for r in rows})}}

    every_row, every_image, images_of = [], [], {}
    hard = {key: (world / "audio" / folder, read_metadata(world / "audio" / folder)[: args.limit])
            for key, folder in HARD_PARTS.items() if (world / "audio" / folder / "metadata.jsonl").exists()}
    for key, folder, part_rows, name in (("spoken", test, rows, "held-out voices"), ("spoken_engine", test_engine, engine_rows, "held-out engine"),
                                         ("spoken_unheard", test_unheard, unheard_rows, "engines no stage uses"),
                                         *((key, folder, part_rows, HARD_NAMES[key]) for key, (folder, part_rows) in hard.items())):
        if not part_rows:
            continue
        images_of[key] = spoken_images(pipe, [folder / r["file_name"] for r in part_rows], args.steps, args.guidance, args.seed)
        results[key] = judge(images_of[key], part_rows)
        log(f"spoken → image ({name}): {results[key]}")
        every_row, every_image = every_row + part_rows, every_image + images_of[key]
    if unheard_rows:
        results["settings"]["unheard_engines"] = sorted({r["engine"] for r in unheard_rows})
    spoken = images_of["spoken"]
    plain = [i for i, r in enumerate(every_row) if "hard" not in r]  # the per-engine and per-voice tables: clips said plainly
    every_row, every_image = [every_row[i] for i in plain], [every_image[i] for i in plain]
    for key, field in (("per_engine", "engine"), ("per_voice", "voice")):
        names = sorted({r.get(field, "?") for r in every_row})
        results[key] = {n: judge([im for im, r in zip(every_image, every_row) if r.get(field, "?") == n], [r for r in every_row if r.get(field, "?") == n])
                        for n in names}

    # the same captions, as many images as spoken clips, with the same seeds
    states = encode_captions([r["caption"] for r in rows], pipe.text_encoder, pipe.tokenizer)
    empty = encode_captions([""], pipe.text_encoder, pipe.tokenizer)
    results["text"] = judge(condition_images(sd, states, empty, args.steps, args.guidance, args.seed), rows)
    log(f"text → image: {results['text']}")
    random, _ = random_conditions(pipe, len(rows), args.seed)
    results["random"] = judge(condition_images(sd, random, empty, args.steps, args.guidance, args.seed), rows)
    log(f"random condition → image: {results['random']}")
    scorer = None
    if args.cascade:
        from scoring.scorer import AudioImageScorer

        scorer_dir = Path(args.models) / "scorer"
        scorer = AudioImageScorer.from_pretrained(str(scorer_dir / "clap"), str(scorer_dir / "clip"), str(scorer_dir / "vocabulary.txt"), device="cpu")
        cascade = spoken_images(CascadeBaseline(pipe, scorer), [test / r["file_name"] for r in rows], args.steps, args.guidance, args.seed)
        results["cascade"] = judge(cascade, rows)
        log(f"cascade (CLAP's caption → text → image): {results['cascade']}")
        if engine_rows:
            cascade = spoken_images(CascadeBaseline(pipe, scorer), [test_engine / r["file_name"] for r in engine_rows], args.steps,
                                    args.guidance, args.seed)
            results["cascade_engine"] = judge(cascade, engine_rows)
            log(f"cascade, held-out engine: {results['cascade_engine']}")

    results["sounds"] = evaluate_sounds(pipe, sd, scorer, world, args, log)

    grid = np.concatenate([np.concatenate([np.asarray(im) for im in images[:24]], axis=1) for images in (spoken, condition_images(sd, states[:24], empty, args.steps, args.guidance, args.seed))])
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(out / "samples.png")

    if args.clap:
        from evaluation.__main__ import main as clap_evaluation

        # an evaluation run resumes any clip it finds done; these are new models, so none of the old clips may count
        shutil.rmtree(out / "clap_scored", ignore_errors=True)

        argv_clap = ["--data", str(world / "audio"), "--split", "test", "--out", str(out / "clap_scored"), "--pipeline", str(Path(args.models) / "pipeline"),
                     "--clap-model", str(Path(args.models) / "scorer" / "clap"), "--clip-model", str(Path(args.models) / "scorer" / "clip"),
                     "--vocabulary", str(Path(args.models) / "scorer" / "vocabulary.txt"), "--steps", str(args.steps),
                     "--guidance", str(args.guidance), "--seed", str(args.seed), "--device", "cpu", "--quiet"]
        if args.limit:
            argv_clap += ["--limit", str(args.limit)]
        if clap_evaluation(argv_clap) != 0:
            raise RuntimeError("the CLAP-scored evaluation stopped: its message is printed above")
        metrics = json.loads((out / "clap_scored" / "metrics.json").read_text())
        keep = ("aic_accuracy", "mean_agreement", "rank_score", "audio_caption_similarity", "image_caption_similarity")
        results["clap_scored"] = {k: metrics[k] for k in keep if k in metrics}
        log(f"CLAP-scored: {results['clap_scored']}")
    results["seconds"] = round(log.elapsed, 1)
    write_json(out / "results.json", results)
    report = markdown(results) + ("\n## Everyday sounds → image, judged without a trained model\n\n" + sound_markdown(results["sounds"])
                                  if results["sounds"] else "")
    (out / "results.md").write_text(report)
    print(report)
    return results


if __name__ == "__main__":
    main()
