"""What fewer denoising steps cost the world in miniature, and how often live mode shows a new picture, on this CPU.

    python bench/live.py                     # held-out clips (data/world/audio/test, if built) and the shipped examples
    python bench/live.py --clips 144 --threads 2
    python bench/live.py --live-only         # only part 2

1. Right-picture rate and time per image at 25, 8, 4 and 2 steps (guidance 3, the world's): the world's model-free
   checker (world/checker.py) judges one picture per clip, on `--clips` held-out clips evenly spread over
   data/world/audio/test (voices no stage trained on; skipped when the folder is absent) and on the shipped examples
   (examples/world, two seeds each). Time per image: one picture a call, as live mode draws, median over the examples.
2. The live loop against the file-upload path, through the app's own handlers (app.make_live_handler,
   app.make_handler) on the shipped models: the examples are played in real time as a microphone would send them
   (chunks every --stream-every seconds; the handler returns at once and the painter's picture comes with a later
   chunk, the last with Stop) and the script prints the seconds between two pictures the page gets while sound
   arrives, and whether the picture that stays after each spoken sentence shows it; against it, the seconds one upload request takes (the app's defaults: two
   images at 25 steps, ranked by the scorer).
Nothing here is picked after the fact: every clip and example counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the repo

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from hearing.audio import resample  # noqa: E402
from align.data import read_metadata  # noqa: E402
from generate.model_sets import WORLD_MODELS, WORLD_SAMPLING  # noqa: E402

STEPS = (25, 8, 4, 2)
HELD_OUT = ROOT / "data" / "world" / "audio" / "test"
EXAMPLES = ROOT / "examples" / "world"
MIC_RATE = 48_000  # what a browser's microphone records


def example_scenes() -> list[tuple[Path, dict]]:
    """The shipped spoken examples and the scene each names (red_circle_left.wav: a red circle on the left)."""
    return [(path, dict(zip(("colour", "shape", "position"), path.stem.split("_")))) for path in sorted(EXAMPLES.glob("*.wav"))]


def held_out_scenes(count: int) -> list[tuple[Path, dict]]:
    """`count` held-out clips evenly spread over data/world/audio/test (every caption and voice in turn), if built."""
    if not (HELD_OUT / "metadata.jsonl").is_file():
        return []
    rows = [row for row in read_metadata(HELD_OUT) if "shape" in row]
    picked = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, min(count, len(rows)))]
    return [(HELD_OUT / row["file_name"], {key: row[key] for key in ("colour", "shape", "position")}) for row in picked]


def right_rate(pipe, clips: list[tuple[Path, dict]], steps: int, seeds: int = 1) -> float:
    """Share of pictures the checker finds right in all three (colour, shape, position): `seeds` pictures a clip."""
    from world.checker import accuracy
    from world.evaluate import spoken_images

    images, scenes = [], []
    for seed in range(seeds):
        images += spoken_images(pipe, [path for path, _ in clips], steps, WORLD_SAMPLING.guidance, seed * len(clips))
        scenes += [scene for _, scene in clips]
    return accuracy(images, scenes)["all"]


def seconds_per_image(pipe, clips: list[tuple[Path, dict]], steps: int) -> float:
    """Median seconds of one call for one picture (sound decoded, encoded, denoised, decoded), after one warm-up."""
    pipe(str(clips[0][0]), num_inference_steps=steps, guidance_scale=WORLD_SAMPLING.guidance)
    times = []
    for path, _ in clips * 2:
        started = time.perf_counter()
        pipe(str(path), num_inference_steps=steps, guidance_scale=WORLD_SAMPLING.guidance, generator=torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def microphone(paths: list[Path], before_s: float, after_s: float) -> tuple[np.ndarray, list[float]]:
    """The sentences one after another as a 48 kHz microphone hears them, each between pauses; and when each ends (s)."""
    parts, ends, at = [], [], 0.0
    for path in paths:
        wave, rate = sf.read(path, dtype="float32", always_2d=True)
        wave = resample(wave.mean(axis=1), rate, MIC_RATE)
        parts += [np.zeros(int(before_s * MIC_RATE), np.float32), wave, np.zeros(int(after_s * MIC_RATE), np.float32)]
        at += before_s + wave.shape[0] / MIC_RATE
        ends.append(at)
        at += after_s
    return (np.concatenate(parts) * 32767).astype(np.int16), ends  # int16, as Gradio hands the app a microphone's chunk


def play_live(listen, stop_listening, sound: np.ndarray, steps: int, interval: float, stream_every: float) -> list[tuple[float, float, object]]:
    """Play `sound` to the live handler in real time: every `stream_every` s it gets what the microphone recorded since
    the last chunk, then Stop. Returns (wall seconds, seconds of sound heard, picture) for each picture the page gets."""
    from PIL import Image

    listener, sent, pictures = None, 0, []
    started = time.perf_counter()
    while sent < sound.shape[0]:
        recorded = min(int((time.perf_counter() - started) * MIC_RATE), sound.shape[0])
        if recorded - sent < int(stream_every * MIC_RATE) and recorded < sound.shape[0]:
            time.sleep(0.005)
            continue
        picture, _, listener = listen((MIC_RATE, sound[sent:recorded]), listener, steps, interval)
        sent = recorded
        if isinstance(picture, Image.Image):
            pictures.append((time.perf_counter() - started, sent / MIC_RATE, picture))
    picture, _, _ = stop_listening(listener)  # the last window's picture comes with Stop
    if isinstance(picture, Image.Image):
        pictures.append((time.perf_counter() - started, sent / MIC_RATE, picture))
    return pictures


def judged(picture) -> dict:
    from world.checker import check_image

    factor = picture.width // 32  # the app shows the world's 32 px picture enlarged pixel for pixel
    return check_image(np.asarray(picture.convert("RGB"))[::factor, ::factor])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/live.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=72, help="held-out clips to judge at each step count (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--interval", type=float, default=1.0, help="live: seconds of sound between pictures (default %(default)s)")
    parser.add_argument("--stream-every", type=float, default=0.25, help="live: seconds between microphone chunks (default %(default)s)")
    parser.add_argument("--live-only", action="store_true", help="skip part 1 (the step counts); only the live loop against the upload")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from world.evaluate import load_world_pipeline

    pipe = load_world_pipeline(WORLD_MODELS)
    pipe.set_progress_bar_config(disable=True)
    examples, held_out = example_scenes(), held_out_scenes(0 if args.live_only else args.clips)
    if not args.live_only:
        step_counts(pipe, examples, held_out)
    live_against_upload(pipe, examples, args)
    return 0


def step_counts(pipe, examples: list[tuple[Path, dict]], held_out: list[tuple[Path, dict]]) -> None:
    print(f"== the world in miniature on {torch.get_num_threads()} torch thread(s): {len(held_out)} held-out clips "
          f"({'data/world/audio/test' if held_out else 'not built'}), {len(examples)} shipped examples × 2 seeds; guidance {WORLD_SAMPLING.guidance:g}", flush=True)
    print(f"{'steps':>5}  {'held-out right':>14}  {'examples right':>14}  {'s / image':>9}", flush=True)
    rows = {}
    for steps in STEPS:
        held = right_rate(pipe, held_out, steps) if held_out else float("nan")
        shipped = right_rate(pipe, examples, steps, seeds=2)
        seconds = seconds_per_image(pipe, examples, steps)
        rows[steps] = (held, shipped, seconds)
        print(f"{steps:>5}  {100 * held:>12.1f} %  {100 * shipped:>12.1f} %  {seconds:>9.3f}", flush=True)
    best = rows[STEPS[0]]
    keeps = [s for s in STEPS if rows[s][1] >= best[1] and (not held_out or rows[s][0] >= best[0] - 0.02)]
    print(f"cheapest that keeps the picture right (examples as right as {STEPS[0]} steps, held-out within 2 points): "
          f"{min(keeps)} steps; live mode's default: {WORLD_SAMPLING.live}", flush=True)


def live_against_upload(pipe, examples: list[tuple[Path, dict]], args) -> None:
    import app

    settings = app.Settings.from_args(["--device", "cpu", "--live-interval", str(args.interval)])
    listen, stop_listening = app.make_live_handler(pipe, settings)
    paths = [path for path, _ in examples]
    print(f"\n== live ({settings.live_steps} steps, a picture every {args.interval:g} s of sound, chunks every {args.stream_every:g} s) "
          "against the file upload", flush=True)
    talk, _ = microphone(paths * 2, 0.0, 0.3)  # sentence after sentence, short pauses: sound all the time
    pictures = play_live(listen, stop_listening, talk, settings.live_steps, args.interval, args.stream_every)
    gaps = np.diff([wall for wall, _, _ in pictures])
    print(f"live, while sound arrives ({talk.shape[0] / MIC_RATE:.1f} s of speech): {len(pictures)} pictures; seconds between two: "
          f"median {np.median(gaps):.2f}, max {gaps.max():.2f}", flush=True)
    paused, ends = microphone(paths, 1.0, 1.5)  # each sentence between pauses, as the browser test plays them
    pictures = play_live(listen, stop_listening, paused, settings.live_steps, args.interval, args.stream_every)
    stays = []
    for (path, scene), end in zip(examples, ends):
        last = [picture for _, heard, picture in pictures if heard <= end + 1.5]
        stays.append(bool(last) and judged(last[-1]) == scene)
    print(f"live, each example between pauses: the picture that stays after the sentence is right for {sum(stays)} of {len(stays)}", flush=True)

    scorer = None
    try:
        settings_upload = app.Settings.from_args(["--device", "cpu"])
        _, scorer = app.load_models(settings_upload)
    except app.ModelLoadError as error:
        print(f"(upload without the scorer: {error})")
    generate = app.make_handler(pipe, scorer, settings)
    generate(str(paths[0]), seed=0)  # warm-up
    times = []
    for path in paths:
        started = time.perf_counter()
        generate(str(path), seed=0)
        times.append(time.perf_counter() - started)
    print(f"file upload (the app's defaults: {min(2, settings.max_images)} images, {settings.default_steps} steps, "
          f"{'ranked' if scorer else 'unranked'}): {statistics.median(times):.2f} s a request (median of {len(times)})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
