"""The audio-image scorer: its arithmetic on numbers whose answer is known, then the real class on tiny CLAP and CLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.metrics import agreement, agreement_matrix, rank_scores
from scoring.scorer import AudioImageScorer, ScoreResult
from scoring.vocabulary import load_vocabulary
from architectures import tiny_models


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic


def test_agreement_is_one_for_identical_and_zero_for_disjoint_distributions():
    p = torch.tensor([0.7, 0.2, 0.1, 0.0])
    assert agreement(p, p).item() == pytest.approx(1.0, abs=1e-6)
    assert agreement(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-6)
    # By hand: p = [1, 0], q = [.5, .5], mixture m = [.75, .25]; JSD = ½ KL(p‖m) + ½ KL(q‖m) in bits.
    jsd = 0.5 * (1.0 * math.log2(1 / 0.75)) + 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25))
    assert agreement(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).item() == pytest.approx(1 - jsd, abs=1e-6)


def test_agreement_is_symmetric_and_in_unit_interval():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200, 50, generator=g).pow(4).softmax(-1)
    q = (torch.randn(200, 50, generator=g) * 5).softmax(-1)
    a = agreement(p, q)
    assert torch.allclose(a, agreement(q, p), atol=1e-6)
    assert a.min() >= 0 and a.max() <= 1
    assert a.max() < 1  # different distributions never reach 1


def test_agreement_matrix_matches_pairwise_and_chunks():
    g = torch.Generator().manual_seed(1)
    audio = (torch.randn(5, 7, generator=g) * 3).softmax(-1)
    images = (torch.randn(4, 7, generator=g) * 3).softmax(-1)
    expected = torch.stack([torch.stack([agreement(a, i) for i in images]) for a in audio])
    assert torch.allclose(agreement_matrix(audio, images), expected, atol=1e-6)
    assert torch.allclose(agreement_matrix(audio, images, chunk_elements=1), expected, atol=1e-6)  # one row at a time
    with pytest.raises(ValueError, match="different vocabularies"):
        agreement_matrix(audio, images[:, :6])


def test_matching_pair_outranks_mismatched_ones():
    # Three sounds, each mostly one class; image k is mostly class k. Each sound's own image must win.
    peaked = lambda k: torch.full((3,), 0.1).index_fill(0, torch.tensor([k]), 0.8)  # noqa: E731
    audio = torch.stack([peaked(k) for k in range(3)])
    images = torch.stack([peaked(k) for k in (0, 1, 2)])
    matrix = agreement_matrix(audio, images)
    assert torch.equal(matrix.argmax(1), torch.arange(3))
    assert torch.allclose(matrix.diagonal(), torch.ones(3), atol=1e-6)
    assert torch.equal(rank_scores(matrix, [0, 1, 2]), torch.full((3,), 100.0))


def test_rank_score_matches_hand_computation():
    # clip 0 owns images 0 and 1; clip 1 owns image 2; clip 2 owns image 3.
    matrix = torch.tensor([
        [0.9, 0.3, 0.5, 0.2],  # own 0.9 beats {0.5, 0.2}: 1; own 0.3 beats 0.2 only: 1/2 → mean 3/4
        [0.4, 0.6, 0.6, 0.7],  # own 0.6 vs others {0.4, 0.6, 0.7}: below 1, tie 1 → (1 + .5) / 3
        [0.1, 0.1, 0.1, 0.0],  # own 0.0 beats nothing → 0
    ])
    scores = rank_scores(matrix, [0, 0, 1, 2])
    assert scores.tolist() == pytest.approx([75.0, 50.0, 0.0])


def test_rank_score_without_other_clips_is_nan():
    assert torch.isnan(rank_scores(torch.tensor([[0.5, 0.4]]), [0, 0])).all()
    with pytest.raises(ValueError, match="one clip index per image"):
        rank_scores(torch.zeros(2, 3), [0, 1])


# ---------------------------------------------------------------------------------------------------------------
# Vocabularies


def test_builtin_vocabularies_are_the_published_class_lists():
    esc = load_vocabulary("esc50")
    assert len(esc) == 50 and len(set(esc.entries)) == 50
    assert (esc.entries[0], esc.entries[10], esc.entries[20], esc.entries[49]) == ("dog", "rain", "crying_baby", "hand_saw")
    assert esc.audio_prompts[11] == "the sound of sea waves" and esc.image_prompts[11] == "a photo of sea waves"
    audioset = load_vocabulary("AudioSet")
    assert len(audioset) == 527 and len(set(audioset.entries)) == 527
    indices = {0: "Speech", 74: "Dog", 137: "Music", 300: "Vehicle", 396: "Siren", 500: "Silence", 526: "Field recording"}
    assert {i: audioset.entries[i] for i in indices} == indices
    assert audioset.audio_prompts[1] == "the sound of male speech, man speaking"


def test_custom_vocabularies_lists_files_templates_and_errors(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# my words\nDog barking\n\nTV static\n")
    vocab = load_vocabulary(path, audio_template="{}", image_template="an image of {}")
    assert vocab.entries == ("Dog barking", "TV static") and vocab.name == "words"
    assert vocab.audio_prompts == ("dog barking", "TV static") and vocab.image_prompts[0] == "an image of dog barking"
    assert load_vocabulary(["a", "b"]).entries == ("a", "b")
    with pytest.raises(ValueError, match="unknown vocabulary"):
        load_vocabulary("esc51")
    with pytest.raises(ValueError, match="repeats"):
        load_vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="at least 2"):
        load_vocabulary(["a"])
    with pytest.raises(ValueError, match="must contain"):
        load_vocabulary(["a", "b"], audio_template="sound")


# ---------------------------------------------------------------------------------------------------------------
# The scorer on tiny models


@pytest.fixture(scope="module")
def scorer():
    clap_model, clap_processor = tiny_models.tiny_clap()
    clip_model, clip_processor = tiny_models.tiny_clip()
    return AudioImageScorer(clap_model, clap_processor, clip_model, clip_processor, vocabulary="esc50")


def _images(n, seed=0, size=(40, 48)):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n)]


def _sound(seconds, seed=0, rate=16_000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def test_score_shapes_ranges_and_determinism(scorer):
    images = _images(3)
    result = scorer.score(_sound(2.5), images, reference_caption="a dog barking")
    assert isinstance(result, ScoreResult)
    for name in ("agreement", "aic", "audio_top", "image_top", "audio_caption_similarity", "image_caption_similarity"):
        assert getattr(result, name).shape == (3,), name
    assert result.aic.dtype == torch.bool and result.audio_top.dtype == torch.long
    assert ((result.agreement >= 0) & (result.agreement <= 1)).all()
    assert torch.equal(result.aic, result.audio_top == result.image_top)
    assert (result.audio_top == result.audio_top[0]).all()
    assert result.audio_caption_similarity.abs().max() <= 1 + 1e-5 and result.image_caption_similarity.abs().max() <= 1 + 1e-5
    assert torch.allclose(result.audio_probs.sum(), torch.tensor(1.0)) and result.image_probs.shape == (3, 50)
    # agreement is 1 − JSD of the distributions the result reports
    assert torch.allclose(result.agreement, agreement(result.audio_probs[None], result.image_probs), atol=1e-6)
    again = scorer.score(_sound(2.5), images, reference_caption="a dog barking")
    assert torch.equal(result.agreement, again.agreement)  # no random crop: the same sound scores the same
    assert scorer.score(_sound(2.5), images).audio_caption_similarity is None
    assert torch.equal(scorer.score_images(_sound(2.5), images), result.agreement)


def test_long_audio_is_heard_in_windows_not_cropped_at_random(scorer):
    # The tiny CLAP's window is 1 s: a 3.4 s clip is 4 windows, averaged, and the result is reproducible.
    long = _sound(3.4, seed=1)
    first = scorer.embed_audio([long])
    assert torch.equal(first, scorer.embed_audio([long]))
    assert torch.allclose(first.norm(dim=-1), torch.ones(1))
    assert not torch.allclose(first, scorer.embed_audio([long[:16_000]]), atol=1e-4)
    # batching several sounds gives each the embedding it gets alone
    both = scorer.embed_audio([long, _sound(0.5)])
    assert torch.allclose(both[0], first[0], atol=1e-5)


def test_audio_inputs_stereo_other_rates_and_files(scorer, tmp_path):
    import soundfile as sf

    mono = _sound(1.5, rate=48_000)
    base = scorer.embed_audio([mono], sampling_rate=48_000)
    stereo = np.stack([mono, mono], axis=1)  # (samples, channels)
    assert torch.allclose(scorer.embed_audio([stereo], sampling_rate=48_000), base, atol=1e-5)
    assert torch.allclose(scorer.embed_audio([torch.from_numpy(stereo.T.copy())], sampling_rate=48_000), base, atol=1e-5)
    path = tmp_path / "clip.wav"
    sf.write(path, _sound(1.5), 16_000)
    assert scorer.embed_audio([str(path)]).shape == base.shape
    with pytest.raises(ValueError, match="no samples"):
        scorer.score(np.zeros(0, dtype=np.float32), _images(1))
    with pytest.raises(ValueError, match="at least one image"):
        scorer.score(_sound(1.0), [])


def test_vocabulary_text_embeddings_are_computed_once(scorer, monkeypatch):
    fresh = AudioImageScorer(scorer.clap_model, scorer.clap_processor, scorer.clip_model, scorer.clip_processor, ["dog", "rain", "siren"])
    calls = []
    original = fresh._clap_text
    monkeypatch.setattr(fresh, "_clap_text", lambda texts: calls.append(len(texts)) or original(texts))
    for _ in range(3):
        fresh.score(_sound(1.0), _images(2))
    assert calls == [3]
    clap_text, clip_text = fresh.vocabulary_embeddings()
    assert clap_text.shape == (3, 16) and clip_text.shape == (3, 16)


def test_constructed_embeddings_give_known_tops_aic_and_ranking(scorer, monkeypatch):
    # Vocabulary embeddings are the basis vectors; the sound is class 2 and image k is class k: image 2 must win,
    # be the only AIC hit, and score_images must rank it first.
    fresh = AudioImageScorer(scorer.clap_model, scorer.clap_processor, scorer.clip_model, scorer.clip_processor, ["a", "b", "c", "d"])
    basis = torch.eye(4, 16)
    fresh._vocab_embeddings = (basis, basis)
    monkeypatch.setattr(fresh, "embed_audio", lambda audios, sampling_rate=16_000: basis[2:3])
    monkeypatch.setattr(fresh, "embed_images", lambda images: basis[[0, 1, 2, 3]])
    result = fresh.score(_sound(1.0), _images(4))
    assert result.audio_top.tolist() == [2, 2, 2, 2] and result.image_top.tolist() == [0, 1, 2, 3]
    assert result.aic.tolist() == [False, False, True, False]
    assert result.agreement.argmax().item() == 2 and result.agreement[2] == pytest.approx(1.0, abs=1e-5)
    assert fresh.score_images(_sound(1.0), _images(4)).argsort(descending=True)[0].item() == 2
    assert fresh.entry(result.audio_top[0]) == "c"


def test_fused_clap_scores_deterministically():
    # A fused CLAP reads 4 mel channels; the extractor would mark one short clip "longer" at random.
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    torch.manual_seed(0)
    config = ClapConfig(
        text_config=dict(vocab_size=len(tiny_models.tiny_clap_tokenizer()), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=66, projection_dim=16),
        audio_config=dict(num_mel_bins=16, spec_size=64, window_size=4, patch_size=4, patch_stride=(4, 4), hidden_size=32,
                          patch_embeds_hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2], projection_dim=16,
                          enable_fusion=True, fusion_type="aff_2d"),
        projection_dim=16,
    )
    processor = ClapProcessor(ClapFeatureExtractor(feature_size=16, max_length_s=1), tiny_models.tiny_clap_tokenizer())
    clip_model, clip_processor = tiny_models.tiny_clip()
    fused = AudioImageScorer(ClapModel(config).eval(), processor, clip_model, clip_processor, ["dog", "rain"])
    sounds = [_sound(0.5, seed=s) for s in range(3)]
    assert torch.equal(fused.embed_audio(sounds), fused.embed_audio(sounds))


def test_scorer_saved_models_load_with_from_pretrained(scorer, tmp_path):
    import json

    # A tokenizer saved after a truncating call stores its length in tokenizer.json, and ClapProcessor then hands
    # that length to the feature extractor as the audio's max_length (a random 64-sample crop here, 512 for the
    # real CLAP). The loaded scorer must still hear the whole sound and match the in-memory one.
    scorer.clap_processor(text=["the sound of rain"], padding=True, truncation=True, return_tensors="pt")
    scorer.clap_model.save_pretrained(tmp_path / "clap")
    scorer.clap_processor.save_pretrained(tmp_path / "clap")
    scorer.clip_model.save_pretrained(tmp_path / "clip")
    scorer.clip_processor.save_pretrained(tmp_path / "clip")
    assert (tmp_path / "clap" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "clap" / "tokenizer.json").read_text())["truncation"]["max_length"] == 64
    loaded = AudioImageScorer.from_pretrained(str(tmp_path / "clap"), str(tmp_path / "clip"), vocabulary="esc50", device="cpu")
    images = _images(2)
    assert torch.allclose(loaded.score_images(_sound(1.2), images), scorer.score_images(_sound(1.2), images), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Ranking in the pipeline (best_of) with the real scorer


def test_pipeline_best_of_keeps_what_the_scorer_ranks_first(scorer):
    from hearing.text_states import encode_captions
    from generate.pipeline import AudioToImagePipeline

    text_encoder, tokenizer = tiny_models.tiny_text_encoder(), tiny_models.tiny_tokenizer()
    pipe = AudioToImagePipeline(
        vae=tiny_models.tiny_vae(), audio_encoder=tiny_models.tiny_audio_encoder(empty_embedding=encode_captions([""], text_encoder, tokenizer)[0]),
        feature_extractor=tiny_models.feature_extractor(), unet=tiny_models.tiny_unet(), scheduler=tiny_models.sd21_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    sound, fast = (16_000, _sound(1.0)), {"num_inference_steps": 2, "height": 32, "width": 32}
    # The same noise makes the same 4 candidates with or without ranking; the scorer sees the window the pipeline heard.
    candidates = pipe(sound, num_images_per_prompt=4, generator=torch.Generator().manual_seed(0), **fast).images
    window = pipe.load_windows(sound, None, "first", None)[0][0]
    expected = scorer.score_images(window, candidates)
    order = expected.argsort(descending=True)
    ranked = pipe(sound, num_images_per_prompt=2, best_of=2, scorer=scorer, generator=torch.Generator().manual_seed(0), **fast)
    assert len(ranked.images) == 2
    assert torch.allclose(ranked.scores, expected[order[:2]], atol=1e-6)
    assert ranked.scores[0] >= ranked.scores[1]
    for image, index in zip(ranked.images, order[:2].tolist()):
        assert np.array_equal(np.asarray(image), np.asarray(candidates[index]))


def test_caption_for_is_the_entry_clap_hears_most(scorer):
    wave = (0.3 * np.sin(np.arange(16_000) / 3)).astype(np.float32)
    probs = scorer.audio_distribution(scorer.embed_audio([wave]))[0]
    assert scorer.caption_for(wave) == scorer.vocabulary.entries[int(probs.argmax())]
