"""Evaluation runs: generate images for every clip of a data set, score them against their sounds, report.

The parts, one file each: `clips.py` reads the data set, `run.py` generates, scores and saves clip by clip
(resumable, split across processes), `report.py` turns the saved clips into metrics.json, a grid, a plot and
report.md, and `__main__.py` is the command line.

    python -m evaluation --data data/synthetic --out runs/synthetic --pipeline saved_pipeline/ --steps 20
    python -m evaluation --data user/esc50-test --split test --out runs/esc50 --num-images 2 --limit 200
    accelerate launch -m evaluation --data ... --out runs/NAME      # clips split across GPUs
    python -m evaluation --shards 'data/eval/shard-{000000..000003}.tar' --out runs/stream   # WebDataset tar shards, streamed
    python -m evaluation --data user/audiocaps --split test --streaming --limit 500 --out runs/audiocaps   # a Hub dataset, streamed

For each clip: images (`images/clip_00012_0.png`), then its scores (`clips/clip_00012.json`, and the
vocabulary distributions in `clips/clip_00012.npz`). The JSON is written last, atomically, so a clip with a
JSON is finished: a run stopped for any reason picks up where it was when started again with the same
arguments (`--limit` may grow). Each clip's noise comes from `--seed` and the clip's index, so a resumed run
makes the same images as an uninterrupted one. A stream (--shards, --streaming) is read in its own order,
clip by clip, with no list made ahead; a resumed run passes its finished clips without decoding them, and under
several processes each takes every n-th clip. Images come from the clip's first encoder window (~6 s, the
pipeline's default); the scores hear the whole clip (CLAP's 10 s windows, averaged).

At the end (main process): `metrics.json`, `report.md`, `grid.png` (clips × images) and `scores.png`.
Metrics (see scoring/ for the scores themselves):
- `aic_accuracy`: share of images whose top vocabulary entry (CLIP) is the clip's top entry (CLAP);
- `mean_agreement`: mean 1 − JSD₂ between each clip's audio distribution and its images';
- `rank_score`: AIS-style, 100 × the share of other clips' images that agree less with a clip's audio than its
  own image does (ties half), averaged over clips; 50 is chance, 100 perfect;
- `audio_caption_similarity` / `image_caption_similarity`: CLAP and CLIP cosine with the reference caption.
"""
