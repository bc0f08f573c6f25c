"""Arithmetic on the scorer's distributions: agreement of a sound's and an image's distributions over a
vocabulary, and the AIS-style rank score of an evaluation. Pure functions, tested on constructed numbers.

**agreement** = 1 − Jensen–Shannon divergence (base 2) of the two distributions, in [0, 1]: 1 when they are
identical, 0 when they share no mass. Chosen over KL (unbounded, asymmetric, infinite where one side puts no
mass) and over the top-1 match alone (it ignores the rest of the distribution, e.g. "dog" and "wolf" both
likely). JSD is symmetric, bounded, finite with zeros, and its square root is a metric.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def agreement(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """1 − JSD₂(p, q) over the last dimension (broadcasting), in [0, 1]; 1 for identical distributions."""
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    # xlogy gives 0·log 0 = 0, so entries one side rules out cost nothing and never produce NaN.
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    jsd = 0.5 * (kl_pm + kl_qm) / np.log(2.0)
    return (1.0 - jsd).clamp(0.0, 1.0).float()


def agreement_matrix(audio_probs: torch.Tensor, image_probs: torch.Tensor, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """(A, V) × (I, V) → (A, I): the agreement of every audio with every image, in row chunks to bound memory."""
    a, i, v = audio_probs.shape[0], image_probs.shape[0], audio_probs.shape[1]
    if image_probs.shape[1] != v:
        raise ValueError(f"audio and image distributions are over different vocabularies ({v} vs {image_probs.shape[1]})")
    rows = max(1, chunk_elements // max(1, i * v))
    return torch.cat([agreement(audio_probs[s : s + rows, None, :], image_probs[None, :, :]) for s in range(0, a, rows)]) if a else torch.zeros(0, i)


def rank_scores(matrix: torch.Tensor, image_owner: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """AIS-style rank score per clip, in [0, 100].

    `matrix[c, j]` scores clip c's audio against image j; `image_owner[j]` is the clip image j was made from.
    A clip's score is 100 × the share of other clips' images that score below its own image (ties count half,
    as in the AUC), averaged over its own images. 50 is chance, 100 means its own images always win.
    """
    owner = torch.as_tensor(image_owner, dtype=torch.long)
    clips, images = matrix.shape
    if owner.shape != (images,):
        raise ValueError(f"image_owner needs one clip index per image ({images}), got shape {tuple(owner.shape)}")
    scores = torch.full((clips,), float("nan"))
    for c in range(clips):
        own = matrix[c, owner == c]
        other = matrix[c, owner != c]
        if own.numel() == 0 or other.numel() == 0:
            continue  # nothing to rank against: NaN, left out of the mean by the caller
        below = (other[None, :] < own[:, None]).double().mean(1)
        ties = (other[None, :] == own[:, None]).double().mean(1)
        scores[c] = float(100.0 * (below + 0.5 * ties).mean())
    return scores
