"""The model card (README.md) that goes with a trained audio encoder: what it was trained on and how, what it
reached on held-out data (from metrics.json), how to load it into the pipeline, and its license. Written beside
the weights by `align.train` (so a saved folder is complete offline) and uploaded with them by `--push-to-hub`.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from hearing.model_ids import DEFAULT_BASE_MODEL

DEFAULT_LICENSE = "mit"  # w2v-BERT 2.0 is MIT; the license of the data a user trains on may add terms: say so in --card-license
SETTINGS_SHOWN = ("audio_model", "train_mode", "num_audio_tokens", "max_train_steps", "train_batch_size", "gradient_accumulation_steps",
                  "learning_rate", "temperature", "mse_weight", "extra_negatives", "mixed_precision", "seed")


def _data(args) -> str:
    if getattr(args, "shards", None):
        return "tar shards " + ", ".join(f"`{s}`" for s in args.shards)
    if getattr(args, "dataset", None):
        return f"the Hub dataset `{args.dataset}`" + (" (streamed)" if getattr(args, "streaming", False) else "")
    return f"the local audiofolder `{args.data_dir}`"


def model_card(args, metrics: dict | None, license: str = DEFAULT_LICENSE) -> ModelCard:
    """The card of an encoder trained with `args` (align.train's arguments) that reached `metrics` (held out)."""
    base_model = getattr(args, "base_model", None) or DEFAULT_BASE_MODEL
    data = ModelCardData(license=license, library_name="transformers", pipeline_tag="feature-extraction",
                         tags=["audio", "wav2vec2-bert", "stable-diffusion", "audio-to-image"], base_model=args.audio_model)
    results = ""
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        results = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4g} |" for k, v in shown.items()) + "\n"
    settings = "\n".join(f"| `--{k.replace('_', '-')}` | {getattr(args, k)} |" for k in SETTINGS_SHOWN if hasattr(args, k))
    text = f"""---
{data.to_yaml()}
---

# Audio prompt encoder for Stable Diffusion 2.1

A wav2vec2-BERT audio encoder with its convolutional adapter, trained so that, token by token, it gives the hidden
states that the CLIP text encoder of `{base_model}` gives for a clip's caption. It stands in for that text encoder:
a sound conditions the UNet directly.

## Training

Trained with `python -m align.train` on {_data(args)}, from `{args.audio_model}`; targets from the text encoder
of `{getattr(args, "text_encoder", None) or base_model}`. Loss: contrastive at the {getattr(args, "contrast_level", "token")} level (both
directions, shared captions masked) plus MSE of weight {getattr(args, "mse_weight", 1.0)}.

| setting | value |
|---|---|
{settings}

## Held-out results

Per-token cosine and MSE to the CLIP targets, and audio → caption retrieval (R@k) on the held-out split, at the
last evaluation (all evaluations are in `metrics.json` beside the weights):

{results or "(no held-out evaluation was run)"}
## Use

```python
from generate import AudioToImagePipeline

pipe = AudioToImagePipeline.from_base_model("{base_model}", audio_encoder="<this folder or Hub id>")
image = pipe("sound.wav").images[0]
```

or `python -m generate --models real --audio-encoder <this folder or Hub id> --audio sound.wav --out out/`.

## License

{license}; the license of the training data may add terms.
"""
    return ModelCard(text)


def write_model_card(folder: str | Path, args, metrics: dict | None, license: str = DEFAULT_LICENSE) -> Path:
    path = Path(folder) / "README.md"
    model_card(args, metrics, license).save(path)
    return path
