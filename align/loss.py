"""The sequence-level contrastive loss that teaches audio to speak CLIP, token by token.

Each audio sequence in the batch is compared with every caption target as a whole sequence: the similarity of a
pair is the cosine at each token position averaged over positions (the similarity retrieval ranks captions by),
over a temperature; cross-entropy pulls each audio toward its own caption (audio → text) and each caption toward
its own audio (text → audio). `level="token"` contrasts at every position on its own instead, and `"both"`
averages the two. Cosine ignores length, but the UNet consumes the raw vectors, so an MSE term to the target
keeps magnitudes right too.

Position 0 (BOS) is left out: it is the same for every caption and the encoder copies it from storage.
Two items with the same caption are both positives, so neither is counted as the other's negative.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CONTRAST_LEVELS = ("token", "sequence", "both")
# whole sequences, as retrieval compares them: on the world's speech at equal time, the token level's retrieval
# trailed the original recipe's (R@1 0.044 against 0.104 after 15 minutes) and the sequence level led it (0.176)
DEFAULT_CONTRAST_LEVEL = "sequence"
# small, so that the contrast leads: at 1.0 the MSE first pulls every clip to the captions' mean state, and retrieval
# starts late (bench/original_recipe.py's ablation)
DEFAULT_MSE_WEIGHT = 0.1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process, keeping the gradient of the local slice.

    `all_gather` (and accelerate's `gather`) returns tensors without gradient; putting the local tensor
    back into its slot lets the loss over all negatives train this process's encoder (as open_clip does).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    gathered[dist.get_rank()] = tensor
    return torch.cat(gathered)


def _positionwise_cross_entropy(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (T, B, C) logits toward the diagonal, with same-caption off-diagonals masked."""
    positives = torch.arange(logits.shape[1], device=logits.device)
    logits = logits.masked_fill(same.unsqueeze(0), float("-inf"))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), positives.repeat(logits.shape[0]))


def sequence_contrastive_loss(
    audio: torch.Tensor,
    text: torch.Tensor,
    temperature: float = 0.15,
    caption_ids: torch.Tensor | None = None,
    extra_negatives: torch.Tensor | None = None,
    first_position: int = 1,
    level: str = DEFAULT_CONTRAST_LEVEL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio → text, text → audio) mean cross-entropy over positions `first_position`.. of (B, T, D) inputs.

    `caption_ids` (B,) marks items that share a caption; `extra_negatives` (K, T, D) are further caption
    targets (from the cache) that only the audio → text direction competes against. `level`: "token" contrasts
    at every position on its own; "sequence" contrasts whole sequences, a pair's similarity the per-token cosine
    averaged over positions (the similarity retrieval ranks by); "both" averages the two.
    """
    if level not in CONTRAST_LEVELS:
        raise ValueError(f"contrast level {level!r}: choose one of {', '.join(CONTRAST_LEVELS)}")
    a = F.normalize(audio[:, first_position:].float(), dim=-1).transpose(0, 1)  # (T, B, D)
    y = F.normalize(text[:, first_position:].float(), dim=-1).transpose(0, 1)  # (T, B, D)
    batch = a.shape[1]
    if caption_ids is None:
        same = torch.zeros(batch, batch, dtype=torch.bool, device=a.device)
    else:
        same = caption_ids[:, None] == caption_ids[None, :]
        same.fill_diagonal_(False)
    logits = a @ y.transpose(1, 2) / temperature  # (T, B audio, B text)
    if extra_negatives is not None and len(extra_negatives):
        n = F.normalize(extra_negatives[:, first_position:].to(a), dim=-1).transpose(0, 1)  # (T, K, D)
        logits = torch.cat([logits, a @ n.transpose(1, 2) / temperature], dim=2)
        same = torch.cat([same, same.new_zeros(batch, n.shape[1])], dim=1)
    levels = {"token": [logits], "sequence": [logits.mean(0, keepdim=True)]}
    levels["both"] = levels["token"] + levels["sequence"]
    audio_to_text = sum(_positionwise_cross_entropy(x, same) for x in levels[level]) / len(levels[level])
    text_to_audio = sum(_positionwise_cross_entropy(x[..., :batch].transpose(1, 2), same[:, :batch]) for x in levels[level]) / len(levels[level])
    return audio_to_text, text_to_audio


class AlignmentLoss(nn.Module):
    """contrastive (both directions, averaged; at each token, of whole sequences, or both) + mse_weight × MSE, over
    negatives from every process."""

    def __init__(self, temperature: float = 0.15, mse_weight: float = DEFAULT_MSE_WEIGHT, first_position: int = 1,
                 level: str = DEFAULT_CONTRAST_LEVEL):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if level not in CONTRAST_LEVELS:
            raise ValueError(f"contrast level {level!r}: choose one of {', '.join(CONTRAST_LEVELS)}")
        self.temperature, self.mse_weight, self.first_position, self.level = temperature, mse_weight, first_position, level

    def forward(self, audio: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor | None = None, extra_negatives: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if audio.shape != text.shape:
            raise ValueError(f"audio states {tuple(audio.shape)} and caption targets {tuple(text.shape)} differ in shape")
        mse = F.mse_loss(audio[:, self.first_position:].float(), text[:, self.first_position:].float())
        all_audio, all_text = gather_with_grad(audio), gather_with_grad(text)
        all_ids = gather_with_grad(caption_ids) if caption_ids is not None else None
        a2t, t2a = sequence_contrastive_loss(all_audio, all_text, self.temperature, all_ids, extra_negatives, self.first_position, self.level)
        contrastive = (a2t + t2a) / 2
        return {"loss": contrastive + self.mse_weight * mse, "contrastive": contrastive, "audio_to_text": a2t, "text_to_audio": t2a, "mse": mse}


def contrastive_scale(num_processes: int) -> float:
    """What the contrastive term is multiplied by before backward, so that the gradient equals one process's on
    the concatenated batch. Each process's loss is the full-batch contrastive loss, but gradient flows only
    through its own slice (align.loss.gather_with_grad), and DDP averages gradients over processes: the slices'
    sum is the full gradient, their average 1/N of it. The MSE is a per-process mean, which DDP's average
    already makes the full-batch mean."""
    return float(num_processes)


def loss_for_backward(losses: dict[str, torch.Tensor], mse_weight: float, num_processes: int) -> torch.Tensor:
    if num_processes == 1:
        return losses["loss"]
    return contrastive_scale(num_processes) * losses["contrastive"] + mse_weight * losses["mse"]
