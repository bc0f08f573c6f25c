"""How many torch threads the offline world's pictures want on this CPU, idle and beside a second job.

    python bench/threads.py                  # 1 thread against every core, 7 alternating rounds each way
    python bench/threads.py --repeats 11

The call the CLI and the app make for a picture (AudioToImagePipeline on models/world, a shipped example, 25 steps,
guidance 3; one image, and two as the app's default) is timed at 1 torch thread and at every core, the settings
alternating round by round in one process (bench/side_by_side.alternate), so a change on a shared machine lands on
both. Then the same with a second job busy on one core (a one-thread matrix loop in another process), as when two
requests or a training run share the machine. Prints the median seconds per call and the paired ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the repo

import torch  # noqa: E402

from bench.side_by_side import alternate  # noqa: E402
from generate.model_sets import WORLD_MODELS, WORLD_SAMPLING  # noqa: E402

SOUND = ROOT / "examples" / "world" / "red_circle_left.wav"
SECOND_JOB = "import torch\ntorch.set_num_threads(1)\na = torch.randn(384, 384)\nwhile True:\n    a = torch.tanh(a @ a)\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/threads.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds per setting (default %(default)s)")
    args = parser.parse_args(argv)
    from world.evaluate import load_world_pipeline

    pipe = load_world_pipeline(WORLD_MODELS)
    pipe.set_progress_bar_config(disable=True)
    every = os.cpu_count() or 1

    def picture(threads: int, images: int):
        def call():
            torch.set_num_threads(threads)
            pipe(str(SOUND), num_images_per_prompt=images, num_inference_steps=WORLD_SAMPLING.steps, guidance_scale=WORLD_SAMPLING.guidance,
                 generator=torch.Generator().manual_seed(0))
        return call

    print(f"== the world's picture call ({WORLD_SAMPLING.steps} steps) on {every} cores: 1 thread against {every}, {args.repeats} rounds", flush=True)
    print(f"{'condition':<28} {'images':>6} {'1 thread (s)':>13} {f'{every} threads (s)':>14} {'ratio all/1':>12}", flush=True)
    for condition in ("idle", "a second job on one core"):
        job = subprocess.Popen([sys.executable, "-c", SECOND_JOB]) if condition != "idle" else None
        try:
            for images in (1, 2):
                rounds = alternate({"1": picture(1, images), "all": picture(every, images)}, args.repeats)
                ratio = rounds.ratio("all", "1")
                print(f"{condition:<28} {images:>6} {rounds.median('1'):>13.3f} {rounds.median('all'):>14.3f} "
                      f"{ratio['median']:>8.2f} ({ratio['q1']:.2f}-{ratio['q3']:.2f})", flush=True)
        finally:
            if job is not None:
                job.kill()
                job.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
