"""Every model of the system built from configs, defined once: at the real sizes and in miniature.

- `architectures.real_models`: Stable Diffusion 2.1 (UNet, VAE, OpenCLIP-H text tower, noise schedule) and
  w2v-BERT 2.0 with the adapter, at their real sizes and with random weights: what benchmarks measure when
  nothing may be downloaded.
- `architectures.tiny_models`: the same architectures in miniature (and a tiny CLAP and CLIP for scoring),
  seeded, seconds to build: the stand-ins the tests, the benchmarks and the notebook's smoke run share.

Nothing here is trained and nothing is downloaded: weights come from the Hub (or from `python -m world.rebuild`)
elsewhere; this package only knows shapes.
"""
