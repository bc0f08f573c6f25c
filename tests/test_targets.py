import numpy as np
import pytest
import torch

from align.targets import TargetCache
from hearing.text_states import encode_captions
from architectures import tiny_models

CAPTIONS = ["a dog barking", "rain on a roof", "a dog barking", "church bells"]


def test_targets_are_the_text_encoder_states_computed_once_in_batches(tmp_path, text_encoder, tokenizer):
    cache = TargetCache(tmp_path, text_encoder, tokenizer, batch_size=2)
    rows = cache.ensure(CAPTIONS)
    assert rows[0] == rows[2] and len(cache) == 3
    calls = cache.encoder_calls  # "" + two batches for three unique captions
    assert calls == 3
    torch.testing.assert_close(cache.get(rows), encode_captions(CAPTIONS, text_encoder, tokenizer), atol=2e-3, rtol=2e-3)
    cache.ensure(CAPTIONS)
    assert cache.encoder_calls == calls  # nothing recomputed


def test_cache_is_reused_across_runs_without_the_text_encoder(tmp_path, text_encoder, tokenizer):
    first = TargetCache(tmp_path, text_encoder, tokenizer)
    want = first.lookup(CAPTIONS)
    again = TargetCache(tmp_path, text_encoder, tokenizer)
    assert again.encoder_calls == 0
    torch.testing.assert_close(again.lookup(CAPTIONS), want)
    offline = TargetCache(tmp_path, fingerprint=first.fingerprint)  # no text encoder at all
    torch.testing.assert_close(offline.lookup(CAPTIONS), want)
    assert isinstance(offline._shards[0], np.memmap)
    with pytest.raises(ValueError, match="not cached"):
        offline.lookup(["a caption never seen"])


def test_cache_is_keyed_by_encoder(tmp_path, text_encoder, tokenizer):
    a = TargetCache(tmp_path, text_encoder, tokenizer)
    other = tiny_models.tiny_text_encoder()
    with torch.no_grad():
        other.get_input_embeddings().weight.add_(0.5)
    b = TargetCache(tmp_path, other, tokenizer)
    assert a.fingerprint != b.fingerprint and a.dir != b.dir


def test_empty_caption_and_bos_are_stored(tmp_path, text_encoder, tokenizer):
    cache = TargetCache(tmp_path, text_encoder, tokenizer)
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    torch.testing.assert_close(cache.empty_embedding, empty)
    torch.testing.assert_close(cache.bos_embedding, cache.lookup(["anything at all"])[0, 0], atol=2e-3, rtol=2e-3)


def test_sampled_negatives_avoid_excluded_rows(tmp_path, text_encoder, tokenizer):
    cache = TargetCache(tmp_path, text_encoder, tokenizer)
    rows = cache.ensure(CAPTIONS)
    sample = cache.sample(5, torch.Generator().manual_seed(0), exclude=[rows[0], rows[1]])
    assert sample.shape == (1, 77, tiny_models.TEXT_HIDDEN)  # only "church bells" is left
    torch.testing.assert_close(sample[0], cache.get([rows[3]])[0])
