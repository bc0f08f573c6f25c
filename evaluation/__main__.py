"""The command line of evaluation runs: `python -m evaluation --help`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hearing.audio import DEFAULT_MAX_SECONDS, AudioError
from hearing.device import DTYPE_CHOICES
from evaluation import __doc__ as DOC
from evaluation.report import REPORT_FILE, fmt, write_comparison
from evaluation.run import IncompleteRunError, run
from evaluation.cascade import MODES
from generate.model_sets import add_model_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data and output")
    data.add_argument("--data", help="local audiofolder (metadata.jsonl with file_name, caption) or Hub dataset id (or give --shards)")
    data.add_argument("--shards", nargs="+", help="instead of --data: WebDataset tar shards, streamed in order (local paths or URLs, brace "
                      "patterns: 'eval-{000000..000015}.tar'); a member pair is key.wav (.flac, ...) + key.txt or key.json")
    data.add_argument("--streaming", action="store_true", help="read the Hub dataset --data as a stream (nothing downloaded ahead; for corpora "
                      "larger than the disk); --shards always stream")
    data.add_argument("--split", default="test", help="split: a subfolder of an audiofolder (used if present) or a Hub split (default: test)")
    data.add_argument("--audio-column", default=None, help="audio column (default: file_name in an audiofolder, audio on the Hub)")
    data.add_argument("--caption-column", default=None, help="caption column (default: the first of caption, text, description)")
    data.add_argument("--label-column", default=None, help="label column to make captions from, when there is no caption column")
    data.add_argument("--limit", type=int, default=None, help="evaluate only the first K clips (a later run without it resumes and adds the rest)")
    data.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME (created; reused to resume)")
    data.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                      help="a longer clip is recorded as unusable and counted, not decoded (default: %(default)s)")
    add_model_arguments(parser)
    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-audio-tokens", type=int, default=None, help="window of a plain Wav2Vec2BertModel encoder (the original: 47)")
    gen.add_argument("--num-images", type=int, default=1, help="images per clip (default: 1)")
    gen.add_argument("--steps", type=int, default=None, help="denoising steps (default: the base model's: 25; 1 for a few-step base such as stabilityai/sd-turbo)")
    gen.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: 3 for the world, 7.5 for real, 0 for a few-step base)")
    gen.add_argument("--height", type=int, default=None, help="image height, a multiple of 8 (default: the UNet's; 768 for SD 2.1)")
    gen.add_argument("--width", type=int, default=None, help="image width, a multiple of 8 (default: the UNet's)")
    gen.add_argument("--mode", choices=(*MODES, "both"), default="direct",
                     help="direct: the audio encoder; cascade: the baseline (CLAP's nearest caption of the vocabulary, drawn by the "
                          "text path); both: each on the same clips and seeds, in <out>/direct and <out>/cascade, with "
                          "<out>/comparison.md side by side (default: direct)")
    gen.add_argument("--seed", type=int, default=0, help="run seed; clip i's noise is seeded from (seed, i) (default: 0)")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", default="auto", help="cuda, mps, cpu or auto; under accelerate launch each process uses its own GPU")
    hw.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="pipeline dtype; auto: fp16 on GPU, fp32 on CPU")
    hw.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.shards):
        parser.error("give the clips with --data (an audiofolder or Hub id) or --shards (WebDataset tar shards), one of the two")
    if args.streaming and not args.data:
        parser.error("--streaming streams the Hub dataset given by --data; --shards always stream")
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    modes = MODES if args.mode == "both" else (args.mode,)
    results = {}
    for mode in modes:
        one = argparse.Namespace(**{**vars(args), "mode": mode, "out": args.out / mode if len(modes) > 1 else args.out})
        try:
            metrics = run(one)
        except (AudioError, ValueError, OSError, IncompleteRunError) as error:  # named problems: the message, no traceback
            print(f"error: {error}", file=sys.stderr)
            return 1
        if metrics is not None:
            results[mode] = metrics
            print(f"{mode}: AIC accuracy {metrics['aic_accuracy']:.3f}, mean agreement {metrics['mean_agreement']:.3f}, "
                  f"rank score {fmt(metrics['rank_score'], 1)} over {metrics['num_scored_clips']} clips: {one.out / REPORT_FILE}")
    if len(results) > 1:
        print(f"side by side: {write_comparison(args.out, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
