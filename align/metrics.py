"""How well the audio speaks CLIP, on held-out data: per-token closeness, and whether it names the right caption.

Positions 1.. are compared, as the loss compares them: position 0 (BOS) is the same for every caption.

- `cosine` / `mse`: mean per-position cosine similarity / mean squared error to the caption's own target.
- `R@k`: audio → caption retrieval among all unique held-out captions. A caption's score is the mean
  per-position cosine between the whole audio sequence and the caption's whole target sequence; R@k is
  the fraction of clips whose own caption ranks in the top k. Ties count against the clip, so a model
  that outputs a constant cannot score. `chance_R@k` = k / number of captions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RECALL_AT = (1, 5, 10)


def sequence_cosine(audio: torch.Tensor, text: torch.Tensor, first_position: int = 1) -> torch.Tensor:
    """(B,) mean over positions `first_position`.. of the cosine between matching (B, T, D) sequences."""
    return F.cosine_similarity(audio[:, first_position:].float(), text[:, first_position:].float(), dim=-1).mean(dim=1)


def sequence_mse(audio: torch.Tensor, text: torch.Tensor, first_position: int = 1) -> torch.Tensor:
    """(B,) mean squared error over positions `first_position`.. of matching (B, T, D) sequences."""
    return (audio[:, first_position:].float() - text[:, first_position:].float()).pow(2).mean(dim=(1, 2))


def similarity_matrix(audio: torch.Tensor, candidates: torch.Tensor, first_position: int = 1) -> torch.Tensor:
    """(N, U): mean per-position cosine between each audio sequence (N, T, D) and each candidate (U, T, D)."""
    a = F.normalize(audio[:, first_position:].float(), dim=-1)
    c = F.normalize(candidates[:, first_position:].float(), dim=-1)
    return torch.einsum("ntd,utd->nu", a, c) / a.shape[1]


def retrieval_ranks(similarity: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """(N,) 0-based rank of each row's correct column; a tie with another column ranks below it."""
    own = similarity.gather(1, correct.view(-1, 1))
    return (similarity >= own).sum(dim=1) - 1


def retrieval_recall(similarity: torch.Tensor, correct: torch.Tensor, ks: tuple[int, ...] = RECALL_AT) -> dict[str, float]:
    """{"R@k": fraction of rows whose correct column is among the k most similar} for each k."""
    ranks = retrieval_ranks(similarity, correct)
    return {f"R@{k}": (ranks < k).float().mean().item() for k in ks}


@torch.no_grad()
def evaluate(encoder, loader, cache, first_position: int = 1, captions: list[str] | None = None, ks: tuple[int, ...] = RECALL_AT) -> dict[str, float]:
    """Metrics of `encoder` (an AudioPromptEncoder) over every batch of `loader` (an AudioCaptionCollator's batches).

    Candidates for retrieval are `captions`, by default every unique caption of `loader.dataset`;
    their targets come from `cache` (a TargetCache that already holds them).
    """
    captions = list(dict.fromkeys(captions if captions is not None else loader.dataset.captions))
    position = {caption: i for i, caption in enumerate(captions)}
    device = next(encoder.parameters()).device
    candidates = cache.lookup(captions).to(device)
    was_training = encoder.training
    encoder.eval()
    cosines, errors, similarities, correct, skipped = [], [], [], [], 0
    for batch in loader:
        skipped += batch["skipped"]
        if batch["input_features"] is None:
            continue
        audio = encoder(batch["input_features"].to(device), attention_mask=batch["attention_mask"].to(device)).last_hidden_state
        window = candidates[:, : audio.shape[1]]  # a shorter window is compared with the targets' first positions (causal CLIP)
        targets = window[torch.tensor([position[c] for c in batch["captions"]], device=device)]
        cosines.append(sequence_cosine(audio, targets, first_position))
        errors.append(sequence_mse(audio, targets, first_position))
        similarities.append(similarity_matrix(audio, window, first_position))
        correct.extend(position[c] for c in batch["captions"])
    encoder.train(was_training)
    if not correct:
        raise ValueError("evaluation found no readable held-out audio: check the held-out split (every item was skipped)")
    recall = retrieval_recall(torch.cat(similarities), torch.tensor(correct, device=device), ks)
    return {
        "cosine": torch.cat(cosines).mean().item(),
        "mse": torch.cat(errors).mean().item(),
        **recall,
        **{f"chance_R@{k}": min(k, len(captions)) / len(captions) for k in ks},
        "num_items": len(correct),
        "num_captions": len(captions),
        "skipped": skipped,
    }
