import numpy as np
import pytest
import torch
from transformers import Wav2Vec2BertModel

from hearing.encoder import AudioPromptEncoder, load_audio_encoder
from hearing.text_states import encode_captions
from architectures import tiny_models


@pytest.mark.parametrize("seconds", [0.3, 6.0, 30.0])
def test_output_is_77_positions_for_any_clip_length(audio_encoder, feature_extractor, seconds):
    wave = np.random.default_rng(0).standard_normal(int(seconds * 16_000)).astype(np.float32)
    with torch.no_grad():
        out = audio_encoder(**audio_encoder.features([wave, wave[: len(wave) // 2 + 400]], feature_extractor)).last_hidden_state
    assert out.shape == (2, 77, tiny_models.TEXT_HIDDEN)


def test_position_zero_is_the_stored_bos_state(text_encoder, tokenizer, feature_extractor):
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    encoder = tiny_models.tiny_audio_encoder(empty_embedding=empty)
    wave = np.random.default_rng(1).standard_normal(8_000).astype(np.float32)
    with torch.no_grad():
        out = encoder(**encoder.features([wave], feature_extractor)).last_hidden_state
    torch.testing.assert_close(out[0, 0], empty[0])
    # causal attention: BOS of any caption equals BOS of ""
    torch.testing.assert_close(encode_captions(["a dog barking"], text_encoder, tokenizer)[0, 0], empty[0])


def test_wrong_feature_length_is_explained(audio_encoder, feature_extractor):
    features = feature_extractor(np.ones(32_000, dtype=np.float32), sampling_rate=16_000, return_tensors="pt")
    with pytest.raises(ValueError, match="fit each clip to 96400 samples"):
        audio_encoder(features["input_features"])


def test_save_and_load_round_trip_with_safetensors(tmp_path, text_encoder, tokenizer, feature_extractor):
    encoder = tiny_models.tiny_audio_encoder(empty_embedding=encode_captions([""], text_encoder, tokenizer)[0])
    encoder.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = load_audio_encoder(tmp_path)
    assert isinstance(loaded, AudioPromptEncoder) and loaded.config.audio_config.layerdrop == 0.0
    torch.testing.assert_close(loaded.empty_embedding, encoder.empty_embedding)
    features = encoder.features([np.sin(np.arange(20_000, dtype=np.float32) / 9)], feature_extractor)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**features).last_hidden_state, encoder(**features).last_hidden_state)


def test_original_checkpoint_layout_loads_with_its_window(tmp_path, text_encoder, tokenizer, feature_extractor):
    """The public original is a plain Wav2Vec2BertModel with adapter and a 47-token window."""
    plain: Wav2Vec2BertModel = tiny_models.tiny_audio_encoder().audio_model
    plain.config.layerdrop = 0.1  # as the library default would have saved it
    plain.save_pretrained(tmp_path)
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    encoder = load_audio_encoder(tmp_path, empty_embedding=empty)
    assert encoder.config.num_audio_tokens == 47 and encoder.sequence_length == 48
    assert encoder.config.audio_config.layerdrop == 0.0  # no adapter layer may be dropped at random
    torch.testing.assert_close(encoder.empty_embedding, empty[:48])
    with torch.no_grad():
        out = encoder(**encoder.features([np.ones(16_000, dtype=np.float32) * 0.1], feature_extractor)).last_hidden_state
    assert out.shape == (1, 48, tiny_models.TEXT_HIDDEN)


def test_missing_or_wrong_model_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio encoder"):
        load_audio_encoder(tmp_path / "nowhere")
    tiny_models.tiny_text_encoder().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="clip_text_model"):
        load_audio_encoder(tmp_path)


def test_empty_embedding_shape_is_checked(audio_encoder):
    with pytest.raises(ValueError, match="empty-caption encoding"):
        audio_encoder.set_empty_embedding(torch.zeros(77, 5))
