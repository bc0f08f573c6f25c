import math

import pytest
import torch

from align.loss import AlignmentLoss, sequence_contrastive_loss


def _cos(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def _hand_loss(audio, text, tau, same=None):
    """Both directions written out with loops, the way the docstring states the loss."""
    batch, positions = len(audio), len(audio[0])
    same = same or [[False] * batch for _ in range(batch)]
    a2t = t2a = 0.0
    for t in range(1, positions):  # position 0 (BOS) is left out
        for i in range(batch):
            row = [_cos(audio[i][t], text[j][t]) / tau for j in range(batch) if j == i or not same[i][j]]
            own = _cos(audio[i][t], text[i][t]) / tau
            a2t += -own + math.log(sum(math.exp(x) for x in row))
            col = [_cos(audio[j][t], text[i][t]) / tau for j in range(batch) if j == i or not same[i][j]]
            t2a += -own + math.log(sum(math.exp(x) for x in col))
    n = batch * (positions - 1)
    return a2t / n, t2a / n


AUDIO = [[[9.0, 9.0], [1.0, 0.0], [0.5, 0.5]], [[9.0, 9.0], [0.2, 1.0], [1.0, -0.3]], [[9.0, 9.0], [-1.0, 0.1], [0.0, 1.0]]]
TEXT = [[[7.0, 7.0], [1.0, 0.2], [0.6, 0.4]], [[7.0, 7.0], [0.0, 1.0], [0.9, -0.5]], [[7.0, 7.0], [-0.8, -0.4], [0.3, 0.8]]]


def test_both_directions_match_hand_computation():
    a2t, t2a = sequence_contrastive_loss(torch.tensor(AUDIO), torch.tensor(TEXT), temperature=0.15, level="token")
    want_a2t, want_t2a = _hand_loss(AUDIO, TEXT, 0.15)
    assert a2t.item() == pytest.approx(want_a2t, rel=1e-5)
    assert t2a.item() == pytest.approx(want_t2a, rel=1e-5)
    assert want_a2t != pytest.approx(want_t2a)  # the two directions are really different numbers here


def test_same_caption_items_are_not_negatives():
    ids = torch.tensor([0, 1, 0])  # items 0 and 2 share a caption
    same = [[False, False, True], [False, False, False], [True, False, False]]
    a2t, t2a = sequence_contrastive_loss(torch.tensor(AUDIO), torch.tensor(TEXT), 0.15, caption_ids=ids, level="token")
    want_a2t, want_t2a = _hand_loss(AUDIO, TEXT, 0.15, same)
    assert a2t.item() == pytest.approx(want_a2t, rel=1e-5)
    assert t2a.item() == pytest.approx(want_t2a, rel=1e-5)
    unmasked, _ = sequence_contrastive_loss(torch.tensor(AUDIO), torch.tensor(TEXT), 0.15, level="token")
    assert a2t.item() != pytest.approx(unmasked.item())


def test_extra_negatives_only_enter_audio_to_text():
    audio, text = torch.tensor(AUDIO), torch.tensor(TEXT)
    negatives = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0))
    a2t, t2a = sequence_contrastive_loss(audio, text, 0.15, level="token")
    a2t_neg, t2a_neg = sequence_contrastive_loss(audio, text, 0.15, extra_negatives=negatives, level="token")
    assert a2t_neg > a2t  # more competitors can only raise the cross-entropy
    assert t2a_neg.item() == pytest.approx(t2a.item())


def test_magnitude_term_is_mse_beyond_bos_and_scales_with_weight():
    audio, text = torch.tensor(AUDIO), torch.tensor(TEXT)
    want_mse = sum((a - b) ** 2 for i in range(3) for t in (1, 2) for a, b in zip(AUDIO[i][t], TEXT[i][t])) / (3 * 2 * 2)
    parts = AlignmentLoss(temperature=0.15, mse_weight=0.5)(audio, text)
    assert parts["mse"].item() == pytest.approx(want_mse, rel=1e-5)
    assert parts["loss"].item() == pytest.approx(parts["contrastive"].item() + 0.5 * want_mse, rel=1e-5)
    # cosine alone cannot see a rescaled prediction; the magnitude term does
    scaled = AlignmentLoss(0.15, 1.0)(text * 3, text)
    exact = AlignmentLoss(0.15, 1.0)(text, text)
    assert scaled["contrastive"].item() == pytest.approx(exact["contrastive"].item(), rel=1e-5)
    assert scaled["mse"] > exact["mse"] == 0


def test_gradient_reaches_audio_and_shapes_are_checked():
    audio = torch.tensor(AUDIO, requires_grad=True)
    AlignmentLoss()(audio, torch.tensor(TEXT))["loss"].backward()
    assert audio.grad[:, 1:].abs().sum() > 0
    assert audio.grad[:, 0].abs().sum() == 0  # BOS is not trained
    with pytest.raises(ValueError, match="differ in shape"):
        AlignmentLoss()(torch.zeros(2, 3, 2), torch.zeros(2, 4, 2))


def test_the_sequence_level_contrasts_each_pairs_mean_cosine_both_ways():
    """level="sequence": a pair's logit is the per-token cosine averaged over positions 1.. (the similarity retrieval
    ranks by) over the temperature, cross-entropy both ways; "both" averages it with the token level."""
    torch.manual_seed(0)
    audio, text = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    logits = torch.tensor([[sum(torch.nn.functional.cosine_similarity(audio[i, t], text[j, t], dim=0).item() for t in range(1, 4)) / 3 / 0.15
                            for j in range(3)] for i in range(3)])
    a2t, t2a = sequence_contrastive_loss(audio, text, 0.15, level="sequence")
    assert torch.allclose(a2t, torch.nn.functional.cross_entropy(logits, torch.arange(3)), atol=1e-5)
    assert torch.allclose(t2a, torch.nn.functional.cross_entropy(logits.T, torch.arange(3)), atol=1e-5)
    token = sequence_contrastive_loss(audio, text, 0.15, level="token")
    both = sequence_contrastive_loss(audio, text, 0.15, level="both")
    assert not torch.allclose(token[0], a2t)
    assert torch.allclose(both[0], (token[0] + a2t) / 2) and torch.allclose(both[1], (token[1] + t2a) / 2)
    with pytest.raises(ValueError, match="contrast level 'words'"):
        AlignmentLoss(level="words")


def test_the_sequence_level_masks_shared_captions_and_counts_extra_negatives_one_way():
    torch.manual_seed(1)
    audio, text, extra = torch.randn(3, 4, 5), torch.randn(3, 4, 5), torch.randn(2, 4, 5)
    text[1] = text[0]
    ids = torch.tensor([0, 0, 1])
    mean_cos = lambda x, y: sum(torch.nn.functional.cosine_similarity(x[t], y[t], dim=0).item() for t in range(1, 4)) / 3 / 0.15
    candidates = [*text, *extra]
    logits = torch.tensor([[mean_cos(audio[i], c) for c in candidates] for i in range(3)])
    logits[0, 1] = logits[1, 0] = float("-inf")  # the other clip of the same caption is no negative
    a2t, t2a = sequence_contrastive_loss(audio, text, 0.15, caption_ids=ids, extra_negatives=extra, level="sequence")
    assert torch.allclose(a2t, torch.nn.functional.cross_entropy(logits, torch.arange(3)), atol=1e-5)
    assert torch.allclose(t2a, torch.nn.functional.cross_entropy(logits[:, :3].T, torch.arange(3)), atol=1e-5)
