"""align: train an audio encoder to give, token by token, the CLIP text states Stable Diffusion 2.1 reads.

Names load on first use, so `import align.audio` (or a command line that only checks its input) does not
pay for importing transformers.
"""

import importlib

_EXPORTS = {
    "AudioError": "align.audio",
    "load_audio": "align.audio",
    "AudioPromptEncoder": "align.encoder",
    "AudioPromptEncoderConfig": "align.encoder",
    "load_audio_encoder": "align.encoder",
    "AlignmentLoss": "align.loss",
    "TargetCache": "align.targets",
    "encode_captions": "align.targets",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'align' has no attribute {name!r}")
