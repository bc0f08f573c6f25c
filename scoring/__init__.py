"""scoring: how well images show a sound. CLAP hears the sound, CLIP sees the image, and they meet over the words
of a vocabulary (`scoring.vocabulary`); `scoring.metrics` compares their distributions; `scoring.scorer` holds the
`AudioImageScorer` that ranks a pipeline's candidates and scores evaluation runs.

Names are imported lazily so that `import scoring.metrics` does not load transformers.
"""

import importlib

_EXPORTS = {
    "AudioImageScorer": "scoring.scorer",
    "ScoreResult": "scoring.scorer",
    "Vocabulary": "scoring.vocabulary",
    "load_vocabulary": "scoring.vocabulary",
    "agreement": "scoring.metrics",
    "agreement_matrix": "scoring.metrics",
    "rank_scores": "scoring.metrics",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scoring' has no attribute {name!r}")
