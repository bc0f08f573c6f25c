"""scoring: how well images show a sound. CLAP hears the sound, CLIP sees the image, and they meet over the words
of a vocabulary (`scoring.vocabulary`); `scoring.metrics` compares their distributions; `scoring.scorer` holds the
`AudioImageScorer` that ranks a pipeline's candidates and scores evaluation runs (transformers loads only when a
scorer does).
"""

from scoring.metrics import agreement, agreement_matrix, rank_scores
from scoring.scorer import AudioImageScorer, ScoreResult
from scoring.vocabulary import Vocabulary, load_vocabulary

__all__ = ["AudioImageScorer", "ScoreResult", "Vocabulary", "load_vocabulary", "agreement", "agreement_matrix", "rank_scores"]
