"""align: train the audio prompt encoder (hearing.encoder) to give, token by token, the CLIP text states Stable
Diffusion 2.1 reads: data (local, Hub, streamed), caption targets, the sequence-level contrastive loss, the loop.

Names load on first use, so importing the package does not pay for importing transformers.
"""

import importlib

_EXPORTS = {
    "AlignmentLoss": "align.loss",
    "TargetCache": "align.targets",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'align' has no attribute {name!r}")
