"""A tool for trials: the ears made twice as wide without changing what they hear (function-preserving widening, Net2Net).

    python -m world.widen_ears --ears runs/world/blend/final --world data/world --clip runs/world/words --out /tmp/widen
    python -m world.train_audio --init /tmp/widen/final ...   # then a training cycle with twice the room

The world's ears (w2v-BERT, 3 layers of 144) hold the 72 spoken captions and the 24 sounds together only so well:
every cycle that taught them more of the sounds cost as much speech (world/README.md, "Everyday sounds"). Training
wider ears from scratch means training the whole speech chain again (hours); instead every unit of the backbone is
doubled (hidden 144 → 288, FFN 576 → 1152, each attention head twice as wide) so that the wider ears compute exactly
what the narrow ones did (Chen et al., 2016, Net2Net), and a cycle goes on from there. Tried once, not a rebuild
stage: 1000 steps of sound_mix's recipe from the widened shipped ears ended where the narrow ones were
(world/README.md, "Twice as wide ears do not close it either").

How the function is kept:
- the residual stream is the old one twice over, [x, x]: a LayerNorm over it gives the same normalised values, so
  every LayerNorm's weights are simply repeated;
- a layer reading a doubled input splits each old weight between the two copies, (1/2 + d, 1/2 - d) with a small
  random d per unit, so the sum is the old weight and the two copies get different gradients (the symmetry breaks);
- an attention head keeps its heads and doubles its size: queries, keys and the distance embedding are repeated
  within each head, and the query copies are scaled (c, sqrt(2) - c) so that the dot product over twice the
  dimensions, divided by sqrt(2 d) instead of sqrt(d), is the old score.
The adapter (its width is the text tower's) is kept, except that its FFN doubles as the backbone's does.

Writes <out>/final (the wider AudioPromptEncoder with the ears' feature extractor), <out>/held_out.json (R@1 on every
held-out set, which should equal the narrow ears') and, last, <out>/metrics.json with the largest difference between
the two encoders' states on a batch of the world's clips (a fraction of the largest state).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import SeamlessM4TFeatureExtractor

from hearing.encoder import AudioPromptEncoder, load_audio_encoder
from world.stage import use_threads, write_json


def _copies(size: int) -> torch.Tensor:
    """For a doubled axis [x, x]: the old index of each of the 2 * size new ones."""
    return torch.arange(2 * size) % size


def _head_copies(heads: int, head_size: int) -> torch.Tensor:
    """For attention's inner axis, heads of twice the size: head h's new dims are its old ones, twice."""
    within = torch.arange(2 * head_size) % head_size
    return torch.cat([h * head_size + within for h in range(heads)])


def _glu_copies(size: int) -> torch.Tensor:
    """For a GLU's input, [value, gate] each doubled as the residual stream is."""
    return torch.cat([_copies(size), size + _copies(size)])


def _splits(old_of_new: torch.Tensor, generator: torch.Generator, spread: float) -> torch.Tensor:
    """How a doubled input's weight is shared: (1/2 + d, 1/2 - d) between a unit's first and second copy."""
    old_size = int(old_of_new.max()) + 1
    d = (torch.rand(old_size, generator=generator) * 2 - 1) * spread
    first = torch.zeros(len(old_of_new), dtype=torch.bool)
    seen: set[int] = set()
    for new, old in enumerate(old_of_new.tolist()):
        if old not in seen:
            first[new] = True
            seen.add(old)
    return torch.where(first, 0.5 + d[old_of_new], 0.5 - d[old_of_new])


def widen(ears: AudioPromptEncoder, seed: int = 0, spread: float = 0.2) -> AudioPromptEncoder:
    """The same ears with a backbone twice as wide (hidden, FFN, head size), computing the same states.

    `spread` sets how unevenly a doubled input's weight is split between its copies (d in ±spread): 0 keeps the copies
    identical for ever in training; the function is the same for any value."""
    old = ears.config.audio_config
    hidden, inner, heads = old.hidden_size, old.intermediate_size, old.num_attention_heads
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} attention heads")
    if old.position_embeddings_type not in (None, "relative_key"):
        raise ValueError(f"position embeddings {old.position_embeddings_type!r}: only relative_key (the world's) or none can be widened")
    if old.output_hidden_size == hidden:
        raise ValueError(f"the backbone is as wide as the text tower ({hidden}), so the adapter has no projection to take the doubled width: "
                         "widening would change what the ears hear")
    config = copy.deepcopy(ears.config)
    config.audio_config.hidden_size = 2 * hidden
    config.audio_config.intermediate_size = 2 * inner
    wide = AudioPromptEncoder(config)
    generator = torch.Generator().manual_seed(seed)

    residual, ffn, attention = _copies(hidden), _copies(inner), _head_copies(heads, hidden // heads)

    def linear(weight: torch.Tensor, out_map: torch.Tensor | None, in_map: torch.Tensor | None) -> torch.Tensor:
        if out_map is not None:
            weight = weight[out_map]
        if in_map is not None:
            weight = weight[:, in_map] * _splits(in_map, generator, spread).view(1, -1, *([1] * (weight.ndim - 2)))
        return weight

    # what each weight's rows (outputs) and columns (inputs) are, by the name's ending
    rules = {
        "feature_projection.projection": (residual, None),
        "self_attn.linear_q": (attention, residual), "self_attn.linear_k": (attention, residual),
        "self_attn.linear_v": (attention, residual), "self_attn.linear_out": (residual, attention),
        "intermediate_dense": (ffn, residual), "output_dense": (residual, ffn),
        "conv_module.pointwise_conv1": (_glu_copies(hidden), residual),
        "conv_module.pointwise_conv2": (residual, residual),
        "adapter.proj": (None, residual),
    }
    query_scale = math.sqrt(2) * _splits(attention, generator, spread)  # c and sqrt(2) - c per copy
    state, wide_state = ears.state_dict(), wide.state_dict()
    new_state = {}
    for name, value in state.items():
        value = value.detach().float()
        target_shape = wide_state[name].shape
        if name.startswith("audio_model.adapter.layers") and ("intermediate_dense" in name or "output_dense" in name):
            rows, cols = (ffn, None) if "intermediate_dense" in name else (None, ffn)
        elif name.startswith("audio_model.adapter.") and not name.startswith("audio_model.adapter.proj."):
            rows = cols = None
        else:
            rule = next((r for key, r in rules.items() if f"{key}." in name), None)
            if rule is not None:
                rows, cols = rule
            elif "distance_embedding" in name:
                rows, cols = None, _copies(hidden // heads)
            elif "depthwise_conv" in name or "layer_norm" in name or name.endswith("masked_spec_embed"):
                rows, cols = (residual if value.shape[0] == hidden else None), None
            else:
                rows = cols = None
        if name.endswith(".bias") or value.ndim == 1:
            value = value[rows] if rows is not None else value
        elif "distance_embedding" in name:
            value = value[:, cols]
        elif "depthwise_conv" in name:
            value = value[rows]
        else:
            value = linear(value, rows, cols)
        if ".self_attn.linear_q." in name and not name.startswith("audio_model.adapter."):
            value = value * (query_scale.view(-1, 1) if value.ndim == 2 else query_scale)
        if value.shape != target_shape:
            raise RuntimeError(f"widening {name}: got {tuple(value.shape)}, the wide ears need {tuple(target_shape)}")
        new_state[name] = value.to(wide_state[name].dtype)
    wide.load_state_dict(new_state)
    return wide


def largest_difference(narrow: AudioPromptEncoder, wide: AudioPromptEncoder, features: dict[str, torch.Tensor]) -> float:
    """The largest difference between the two encoders' output states on one batch (eval mode), as a fraction of the
    largest state value: float32 rounding leaves about 1e-6."""
    narrow.eval()
    wide.eval()
    with torch.no_grad():
        before, after = narrow(**features).last_hidden_state, wide(**features).last_hidden_state
        return float((before - after).abs().max() / before.abs().max())


def _sample_waves(audio: Path, count: int, window: int) -> list[np.ndarray]:
    """A few of the world's training clips (or noise where there are none), for the function check."""
    import soundfile

    files = sorted(audio.rglob("*.wav"))
    files = files[:: max(1, len(files) // count)][:count]
    waves = [soundfile.read(f, dtype="float32")[0] for f in files]
    rng = np.random.default_rng(0)
    waves += [rng.standard_normal(window).astype(np.float32) * 0.1 for _ in range(count - len(waves))]
    return waves


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ears", type=Path, required=True, help="the ears to widen (a finished run's final/ folder)")
    parser.add_argument("--world", type=Path, default=Path("data/world"), help="the built world, for the held-out sets")
    parser.add_argument("--clip", type=Path, default=Path("runs/world/words"), help="the text tower the ears learned (its text_encoder/ and tokenizer/)")
    parser.add_argument("--out", type=Path, default=Path("runs/world/widen"))
    parser.add_argument("--seed", type=int, default=0, help="for the uneven splits between copies")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    if not (args.ears / "model.safetensors").exists():
        parser.error(f"--ears {args.ears}: no model.safetensors there; give a finished run's final/ folder")
    use_threads(args.threads)
    start = time.perf_counter()
    from world.train_audio import save_and_measure

    narrow = load_audio_encoder(args.ears, dtype=torch.float32)
    wide = widen(narrow, seed=args.seed)
    extractor = SeamlessM4TFeatureExtractor.from_pretrained(args.ears)
    difference = largest_difference(narrow, wide, narrow.features(_sample_waves(args.world / "audio", 16, narrow.window_samples), extractor))
    print(f"widened {sum(p.numel() for p in narrow.parameters()):,} → {sum(p.numel() for p in wide.parameters()):,} parameters; "
          f"largest difference in the output states: {difference:.1e} of the largest state", flush=True)
    save_and_measure(wide, extractor, args.world, args.clip, args.out)
    metrics = {"ears": str(args.ears), "parameters": sum(p.numel() for p in wide.parameters()), "largest_difference": difference,
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(args.out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
