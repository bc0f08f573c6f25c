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


def test_two_experts_are_mixed_by_the_router_and_round_trip(tmp_path, feature_extractor):
    first = tiny_models.tiny_audio_encoder()
    second = tiny_models.tiny_audio_encoder()  # the same start, moved: a different expert
    with torch.no_grad():
        for weight in second.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    routed = AudioPromptEncoder.from_experts([first], [second]).eval()
    assert routed.config.sound_config is not None and routed.router.in_features == 2 * first.config.audio_config.hidden_size
    features = routed.features([np.sin(np.arange(20_000, dtype=np.float32) / 9), np.zeros(3_000, dtype=np.float32)], feature_extractor)
    with torch.no_grad():
        alone = [expert(**features).last_hidden_state for expert in (first, second)]
        assert not torch.allclose(alone[0], alone[1])
        torch.testing.assert_close(routed(**features).last_hidden_state, (alone[0] + alone[1]) / 2)  # an untrained router: half each
        for bias, expected in ((40.0, alone[0]), (-40.0, alone[1])):  # a sure router: one expert's states, as trained
            routed.router.bias.fill_(bias)
            torch.testing.assert_close(routed(**features).last_hidden_state, expected)
        routed.router.weight.normal_()
        routed.save_pretrained(tmp_path)
        loaded = load_audio_encoder(tmp_path)
        assert loaded.sound_model is not None and tiny_models.tiny_audio_encoder().sound_model is None
        torch.testing.assert_close(loaded(**features).last_hidden_state, routed(**features).last_hidden_state)
    with pytest.raises(ValueError, match="single-expert"):
        AudioPromptEncoder.from_experts([routed], [first])
    with pytest.raises(ValueError, match="windows of"):
        AudioPromptEncoder.from_experts([first], [tiny_models.tiny_audio_encoder(num_audio_tokens=12)])
    with pytest.raises(ValueError, match="text encoders"):
        AudioPromptEncoder.from_experts([first], [tiny_models.tiny_audio_encoder(empty_embedding=torch.ones(77, tiny_models.TEXT_HIDDEN))])


def test_more_experts_on_each_side_are_averaged_each_on_the_features_it_hears(tmp_path, feature_extractor):
    from hearing.features import BatchedFeatureExtractor

    speech, speech_spectrum, sound, spectrum = (tiny_models.tiny_audio_encoder() for _ in range(4))
    with torch.no_grad():
        for expert in (speech_spectrum, sound, spectrum):
            for weight in expert.parameters():
                weight.add_(0.05 * torch.randn_like(weight))
    waves = [np.sin(np.arange(20_000, dtype=np.float32) / 9), 0.1 * np.random.default_rng(0).standard_normal(3_000).astype(np.float32)]
    statistics = BatchedFeatureExtractor(feature_extractor).log_mel_statistics(waves)
    for expert in (speech_spectrum, spectrum):
        expert.config.audio_config.mel_statistics = statistics
    routed = AudioPromptEncoder.from_experts([speech, speech_spectrum], [sound, spectrum]).eval()
    assert len(routed.speech_experts) == len(routed.sound_experts) == 2
    features = routed.features(waves, feature_extractor)
    for side in ("speech_features", "sound_features"):
        assert features[side][0] is None and not torch.allclose(features[side][1], features["input_features"])
    with torch.no_grad():
        heard = [expert(**expert.features(waves, feature_extractor)).last_hidden_state
                 for expert in (speech, speech_spectrum, sound, spectrum)]  # each alone, on the features it hears
        torch.testing.assert_close(spectrum.features(waves, feature_extractor)["input_features"], features["sound_features"][1])
        routed.router.bias.fill_(-40.0)  # a sure router: the sound side, the mean of its two experts
        torch.testing.assert_close(routed(**features).last_hidden_state, (heard[2] + heard[3]) / 2)
        routed.router.bias.fill_(40.0)  # the speech side, the mean of its two
        torch.testing.assert_close(routed(**features).last_hidden_state, (heard[0] + heard[1]) / 2)
        torch.testing.assert_close(routed.router_input(**features), routed.expert_states(**features)[2])
        for missing in ("speech_features", "sound_features"):  # the spectrum experts' own features are not optional
            with pytest.raises(ValueError, match="AudioPromptEncoder.features"):
                routed(**{key: value for key, value in features.items() if key != missing})
        routed.save_pretrained(tmp_path)
        loaded = load_audio_encoder(tmp_path)
        assert loaded.config.extra_sound_configs[0].mel_statistics == spectrum.config.audio_config.mel_statistics
        assert loaded.config.extra_speech_configs[0].mel_statistics == speech_spectrum.config.audio_config.mel_statistics
        torch.testing.assert_close(loaded(**loaded.features(waves, feature_extractor)).last_hidden_state, (heard[0] + heard[1]) / 2)
        half = loaded.features(waves, feature_extractor, dtype=torch.float16)
        assert half["input_features"].dtype == half["sound_features"][1].dtype == half["speech_features"][1].dtype == torch.float16
    with pytest.raises(ValueError, match="give sound_config too"):
        from hearing.encoder import AudioPromptEncoderConfig

        AudioPromptEncoderConfig(audio_config=speech.config.audio_config, extra_sound_configs=[sound.config.audio_config])
    with pytest.raises(ValueError, match="at least one speech expert"):
        AudioPromptEncoder.from_experts([], [sound])


def test_a_sound_expert_must_give_states_over_the_same_window():
    from hearing.encoder import AudioPromptEncoderConfig

    audio_config = tiny_models.tiny_audio_encoder().config.audio_config
    other = audio_config.to_dict() | {"output_hidden_size": audio_config.output_hidden_size + 1}
    with pytest.raises(ValueError, match="output_hidden_size"):
        AudioPromptEncoderConfig(audio_config=audio_config, sound_config=other)
    with pytest.raises(ValueError, match="sound expert needs its convolutional adapter"):
        AudioPromptEncoderConfig(audio_config=audio_config, sound_config=audio_config.to_dict() | {"add_adapter": False})
