import math

import pytest
import torch

from align.data import AudioCaptionCollator, AudioCaptionDataset, caption_vocabulary, load_pairs
from align.metrics import evaluate, retrieval_ranks, retrieval_recall, sequence_cosine, sequence_mse, similarity_matrix
from align.targets import TargetCache


def sequences(*rows):
    """(N, 1 + len(row), 2): position 0 is a shared BOS the metrics must ignore, then one 2-d vector a position."""
    bos = [100.0, -100.0]
    return torch.tensor([[bos, *row] for row in rows])


def test_per_token_cosine_and_mse_skip_position_zero():
    audio = sequences([[1, 0], [0, 2]])
    text = sequences([[1, 0], [0, -2]])
    text[:, 0] = torch.tensor([-5.0, 3.0])  # a BOS that differs would change both figures if it were counted
    assert sequence_cosine(audio, text).tolist() == [0.0]  # (1 + -1) / 2
    assert sequence_mse(audio, text).tolist() == [4.0]  # (0 + 0 + 0 + 16) / 4


def test_recall_is_one_when_audio_equals_targets():
    torch.manual_seed(0)
    targets = torch.randn(20, 7, 16)
    similarity = similarity_matrix(targets, targets)
    assert torch.allclose(similarity.diagonal(), torch.ones(20))
    assert retrieval_recall(similarity, torch.arange(20)) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}


def test_hand_computed_retrieval():
    # three captions, two positions after BOS; unit vectors at angles (degrees) so cosines are easy
    def unit(deg):
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    captions = sequences([unit(0), unit(0)], [unit(90), unit(90)], [unit(0), unit(90)])
    audio = sequences(
        [unit(0), unit(60)],  # vs c0: (1 + .5)/2 = .75, c1: (0 + .866)/2 = .433, c2: (1 + .866)/2 = .933 → own caption c0 ranks 2nd
        [unit(90), unit(90)],  # exactly c1 → 1st
        [unit(180), unit(0)],  # c0: (-1 + 1)/2 = 0, c1: 0, c2: (-1 + 0)/2 = -.5 → own caption c2 ranks 3rd
    )
    similarity = similarity_matrix(audio, captions)
    torch.testing.assert_close(similarity[0], torch.tensor([0.75, math.sqrt(3) / 4, 0.5 + math.sqrt(3) / 4]))
    assert retrieval_ranks(similarity, torch.tensor([0, 1, 2])).tolist() == [1, 0, 2]
    recall = retrieval_recall(similarity, torch.tensor([0, 1, 2]), ks=(1, 2, 3))
    assert recall == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0})


def test_a_constant_output_cannot_score():
    # every caption ties: ties rank against the clip, so R@1 stays at 0 rather than a flattering 1
    similarity = torch.zeros(4, 4)
    assert retrieval_recall(similarity, torch.arange(4), ks=(1, 4)) == {"R@1": 0.0, "R@4": 1.0}


def test_evaluate_on_held_out_data(tmp_path, synthetic_data, audio_encoder, text_encoder, tokenizer, feature_extractor):
    train, held_out = load_pairs(synthetic_data)
    cache = TargetCache(tmp_path, text_encoder, tokenizer)
    vocabulary = caption_vocabulary(train, held_out)
    cache.ensure(list(vocabulary))
    audio_encoder.set_empty_embedding(cache.empty_embedding)
    dataset = AudioCaptionDataset(held_out, vocabulary, audio_encoder.window_samples, crop="center")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=AudioCaptionCollator(feature_extractor))
    audio_encoder.train()
    result = evaluate(audio_encoder, loader, cache)
    assert audio_encoder.training  # evaluation puts back the mode it found
    assert result["num_items"] == 8 and result["num_captions"] == 8 and result["skipped"] == 0
    assert result["chance_R@1"] == 1 / 8 and result["chance_R@10"] == 1.0
    assert -1 <= result["cosine"] <= 1 and result["mse"] > 0
    assert result["R@1"] <= result["R@5"] <= result["R@10"] == 1.0

    # the same figures computed by hand from the encoder's outputs
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=AudioCaptionCollator(feature_extractor))))
    with torch.no_grad():
        audio = audio_encoder.eval()(batch["input_features"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = cache.lookup(batch["captions"])
    assert result["cosine"] == pytest.approx(sequence_cosine(audio, targets).mean().item(), abs=1e-5)
    assert result["mse"] == pytest.approx(sequence_mse(audio, targets).mean().item(), rel=1e-5)
