"""AudioToImagePipeline on tiny models: 2 DPM-Solver++ steps at 32 × 32 pixels (16 × 16 latents)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from diffusers import StableDiffusionPipeline
from transformers import Wav2Vec2BertConfig

from hearing.audio import ONSET_MARGIN_S, SAMPLE_RATE, AudioError
from hearing.encoder import AudioPromptEncoder, AudioPromptEncoderConfig, adapter_settings
from hearing.text_states import encode_captions
from generate.pipeline import AudioImageToImagePipeline, AudioInpaintPipeline, editing_pipeline, AudioToImagePipeline, AudioToImagePipelineOutput
from architectures import tiny_models
from tests.conftest import BrightnessScorer, build_pipeline, save_tiny_sd_base, tone

FAST = {"num_inference_steps": 2, "height": 32, "width": 32}


def seeded(*seeds: int) -> torch.Generator | list[torch.Generator]:
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    return gens[0] if len(gens) == 1 else gens


def write(path, data: bytes | str) -> str:
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return str(path)


@pytest.fixture(scope="module")
def pipe():
    return build_pipeline()


@pytest.fixture(scope="module")
def text_pipe():
    return build_pipeline(text_mixing=True)


@pytest.fixture
def capture_unet(pipe):
    """Records the `encoder_hidden_states` of every UNet call."""
    seen = []
    handles = []

    def attach(target):
        def hook(module, args, kwargs):
            seen.append(kwargs["encoder_hidden_states"].clone())

        handles.append(target.unet.register_forward_pre_hook(hook, with_kwargs=True))
        return seen

    yield attach
    for handle in handles:
        handle.remove()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny SD 2.1-like base model folder (DDIM scheduler config with v-prediction, as SD 2.1 ships)."""
    return save_tiny_sd_base(tmp_path_factory.mktemp("base"))


# -- end to end -------------------------------------------------------------------------------------------------


def test_audio_in_images_out(pipe):
    out = pipe(tone(2.0), sampling_rate=SAMPLE_RATE, num_images_per_prompt=2, generator=seeded(0), **FAST)
    assert isinstance(out, AudioToImagePipelineOutput)
    assert len(out.images) == 2 and all(im.size == (32, 32) and im.mode == "RGB" for im in out.images)
    pixels = np.stack([np.asarray(im, dtype=np.float32) for im in out.images])
    assert pixels.std() > 1.0  # not a blank image
    assert not np.array_equal(pixels[0], pixels[1])  # two draws of noise, two images
    assert out.scores is None and [w["audio"] for w in out.windows] == [0, 0]

    as_np = pipe(tone(2.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    assert as_np.shape == (1, 32, 32, 3) and as_np.dtype == np.float32
    np.testing.assert_allclose(as_np[0] * 255, pixels[0], atol=1.0)
    latents = pipe(tone(2.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="latent", **FAST).images
    assert latents.shape == (1, 4, 16, 16)


def test_same_seed_same_image_other_seed_other_image(pipe):
    first = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(7), output_type="np", **FAST).images
    again = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(7), output_type="np", **FAST).images
    other = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(8), output_type="np", **FAST).images
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_every_audio_form_and_rate_gives_the_same_image(pipe, tmp_path):
    import soundfile as sf

    wave_44k = tone(1.5, rate=44_100)
    path = tmp_path / "clip.wav"
    sf.write(path, wave_44k, 44_100, subtype="FLOAT")
    stereo = np.stack([wave_44k, wave_44k], axis=1)
    results = [
        pipe(src, sampling_rate=rate, generator=seeded(0), output_type="np", **FAST).images
        for src, rate in [(str(path), None), (path.read_bytes(), None), (wave_44k, 44_100), ((44_100, wave_44k), None), (stereo, 44_100)]
    ]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-5)  # resampled, not refused


def test_a_saved_pipeline_carries_its_model_card(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "license: openrail++" in card and "AudioToImagePipeline.from_pretrained" in card
    assert f"{pipe.audio_encoder.config.num_audio_tokens} audio tokens" in card and "unet" in card and "audio_encoder" in card
    assert AudioToImagePipeline.from_pretrained(tmp_path / "saved") is not None  # the card does not disturb loading


def test_push_to_hub_uploads_the_folder_with_its_card_through_huggingface_hub(pipe, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, exist_ok: calls.append(("create", repo_id, exist_ok)))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda repo_id, folder_path, commit_message: calls.append(
        ("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()))))
    pipe.save_pretrained(tmp_path / "pushed", push_to_hub=True, repo_id="someone/sound-pictures")
    assert calls[0] == ("create", "someone/sound-pictures", True)
    assert calls[1][:2] == ("upload", "someone/sound-pictures") and {"README.md", "model_index.json", "unet"} <= set(calls[1][2])
    assert huggingface_hub.ModelCard.load(tmp_path / "pushed" / "README.md").data.library_name == "diffusers"
    with pytest.raises(ValueError, match="repo_id"):
        pipe.save_pretrained(tmp_path / "nowhere", push_to_hub=True)


def test_save_load_round_trip(pipe, text_pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "audio_only")
    index = json.loads((tmp_path / "audio_only" / "model_index.json").read_text())
    assert index["audio_encoder"] == ["hearing.encoder", "AudioPromptEncoder"]  # importable module: loadable
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]
    assert list((tmp_path / "audio_only" / "audio_encoder").glob("*.safetensors"))
    loaded = AudioToImagePipeline.from_pretrained(tmp_path / "audio_only")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.audio_encoder, AudioPromptEncoder) and loaded.text_encoder is None and loaded.tokenizer is None
    torch.testing.assert_close(loaded.audio_encoder.empty_embedding, pipe.audio_encoder.empty_embedding)
    want = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(3), output_type="np", **FAST).images
    got = loaded(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(3), output_type="np", **FAST).images
    np.testing.assert_array_equal(got, want)

    # a folder saved before the encoder moved from align/ to hearing/ names align.encoder: it still loads, the same
    index["audio_encoder"] = ["align.encoder", "AudioPromptEncoder"]
    (tmp_path / "audio_only" / "model_index.json").write_text(json.dumps(index))
    older = AudioToImagePipeline.from_pretrained(tmp_path / "audio_only")
    older.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(older(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(3), output_type="np", **FAST).images, want)

    text_pipe.save_pretrained(tmp_path / "with_text")
    loaded = AudioToImagePipeline.from_pretrained(tmp_path / "with_text")
    assert loaded.text_encoder is not None and loaded.tokenizer is not None


# -- batches ----------------------------------------------------------------------------------------------------


def test_batch_equals_single_calls(pipe):
    a, b = tone(1.0, 300.0), tone(2.5, 900.0, amplitude=0.6)
    batch = pipe([(SAMPLE_RATE, a), (SAMPLE_RATE, b)], generator=seeded(0, 1), output_type="np", **FAST)
    single_a = pipe(a, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    single_b = pipe(b, sampling_rate=SAMPLE_RATE, generator=seeded(1), output_type="np", **FAST).images
    np.testing.assert_allclose(batch.images, np.concatenate([single_a, single_b]), atol=1e-4)
    assert [w["audio"] for w in batch.windows] == [0, 1]
    assert np.abs(single_a - single_b).max() > 1e-3  # the two sounds do give different images


def test_num_images_per_prompt_equals_single_calls(pipe):
    many = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, num_images_per_prompt=2, generator=seeded(4, 5), output_type="np", **FAST).images
    one = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(4), output_type="np", **FAST).images
    two = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(5), output_type="np", **FAST).images
    np.testing.assert_allclose(many, np.concatenate([one, two]), atol=1e-4)


# -- guidance ---------------------------------------------------------------------------------------------------


def test_guidance_uses_the_stored_empty_encoding(pipe, capture_unet):
    seen = capture_unet(pipe)
    waves = [tone(1.0, 300.0), tone(1.0, 800.0)]
    pipe([(SAMPLE_RATE, w) for w in waves], generator=seeded(0), **FAST)
    assert len(seen) == 2  # one UNet call a step: conditional and unconditional in one batch
    states = seen[0]
    assert states.shape == (4, 77, tiny_models.TEXT_HIDDEN)  # 2B sequences of 1 + 76 positions
    empty = pipe.audio_encoder.empty_embedding
    assert empty.abs().sum() > 0
    for row in states[:2]:
        torch.testing.assert_close(row, empty)  # unconditional half: CLIP's encoding of ""
    window = pipe.audio_encoder.window_samples
    with torch.no_grad():
        audio_states = pipe.encode_audio([np.resize(w, window) for w in waves], torch.device("cpu"))
    torch.testing.assert_close(states[2:], audio_states)

    seen.clear()
    pipe(tone(1.0), sampling_rate=SAMPLE_RATE, guidance_scale=1.0, generator=seeded(0), **FAST)
    assert seen[0].shape[0] == 1  # guidance off: the audio states alone


# -- windows ----------------------------------------------------------------------------------------------------


def test_window_policy_all_is_a_storyboard_in_order(pipe):
    window = pipe.audio_encoder.window_samples
    wave = np.concatenate([tone(window / SAMPLE_RATE, f) for f in (200.0, 700.0)] + [tone(0.5 * window / SAMPLE_RATE, 1500.0)])
    out = pipe(wave, sampling_rate=SAMPLE_RATE, window_policy="all", generator=seeded(0, 1, 2), output_type="np", **FAST)
    assert len(out.images) == 3 == int(np.ceil(len(wave) / window))
    assert [w["window"] for w in out.windows] == [0, 1, 2] and all(w["num_windows"] == 3 for w in out.windows)
    assert [w["start_s"] for w in out.windows] == [0.0, window / SAMPLE_RATE, (len(wave) - window) / SAMPLE_RATE]
    assert out.windows[-1]["end_s"] == len(wave) / SAMPLE_RATE
    # image k is the image of window k alone
    for k, start in enumerate([0, window, len(wave) - window]):
        alone = pipe(wave[start : start + window], sampling_rate=SAMPLE_RATE, generator=seeded(k), output_type="np", **FAST).images
        np.testing.assert_allclose(out.images[k], alone[0], atol=1e-4)


def test_windows_go_through_in_bounded_batches_with_the_same_images(pipe, capture_unet):
    window = pipe.audio_encoder.window_samples
    wave = np.concatenate([tone(window / SAMPLE_RATE, f) for f in (200.0, 700.0, 1500.0)])
    together = pipe(wave, sampling_rate=SAMPLE_RATE, window_policy="all", generator=seeded(0, 1, 2), output_type="np", **FAST).images
    seen = capture_unet(pipe)
    apart = pipe(wave, sampling_rate=SAMPLE_RATE, window_policy="all", generator=seeded(0, 1, 2), output_type="np", batch_size=1, **FAST)
    assert len(apart.images) == 3 and [w["window"] for w in apart.windows] == [0, 1, 2]
    assert seen and max(states.shape[0] for states in seen) == 2  # one window (and its unconditional twin) at a time
    np.testing.assert_allclose(apart.images, together, atol=1e-4)


def test_too_many_windows_are_refused_before_any_model_runs(pipe, capture_unet):
    window = pipe.audio_encoder.window_samples
    seen = capture_unet(pipe)
    with pytest.raises(AudioError, match="make 3 windows of .* over the limit of 2"):
        pipe(tone(3 * window / SAMPLE_RATE), sampling_rate=SAMPLE_RATE, window_policy="all", max_windows=2, **FAST)
    assert not seen


def test_window_policy_loudest_and_first(pipe):
    window = pipe.audio_encoder.window_samples
    rng = np.random.default_rng(0)
    wave = (0.01 * rng.standard_normal(3 * window)).astype(np.float32)
    burst = slice(int(1.6 * window), int(1.8 * window))
    wave[burst] = tone((burst.stop - burst.start) / SAMPLE_RATE, 1000.0, amplitude=0.9)
    loud = pipe(wave, sampling_rate=SAMPLE_RATE, window_policy="loudest", generator=seeded(0), output_type="np", **FAST)
    (info,) = loud.windows
    start = round(info["start_s"] * SAMPLE_RATE)
    assert start <= burst.start and burst.stop <= start + window  # the loud event is inside the chosen window
    alone = pipe(wave[start : start + window], sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    np.testing.assert_allclose(loud.images, alone, atol=1e-4)

    # "first" skips the quiet lead-in: it starts ONSET_MARGIN_S before the burst (to the 10 ms frame)
    first = pipe(wave, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST)
    first_start = round(first.windows[0]["start_s"] * SAMPLE_RATE)
    assert 0 <= burst.start - ONSET_MARGIN_S * SAMPLE_RATE - first_start < SAMPLE_RATE // 100
    wave[:2000] = tone(2000 / SAMPLE_RATE, 440.0, amplitude=0.9)  # sound from the very start: the first window starts at 0
    first = pipe(wave, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST)
    assert first.windows[0]["start_s"] == 0.0 and np.abs(first.images - loud.images).max() > 1e-3


def test_a_sound_a_little_longer_than_the_window_is_heard_whole_sped_up(pipe):
    from hearing.audio import split_windows

    window = pipe.audio_encoder.window_samples
    clip = np.concatenate([tone(0.6 * window / SAMPLE_RATE, 300.0), tone(0.6 * window / SAMPLE_RATE, 900.0)])  # 1.2 windows
    out = pipe(clip, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST)
    assert out.windows[0]["sped_up"] is True and out.windows[0]["start_s"] == 0.0
    assert out.windows[0]["end_s"] == pytest.approx(len(clip) / SAMPLE_RATE)  # it heard the sound to its end
    (_, heard), = split_windows(clip, window, "first")
    same = pipe(heard, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    np.testing.assert_allclose(out.images, same, atol=1e-5)
    cut = pipe(clip[:window], sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST)
    assert cut.windows[0]["sped_up"] is False and np.abs(cut.images - out.images).max() > 1e-4


def test_short_clip_is_repeated_to_fill_the_window(pipe):
    clip = tone(0.7, 500.0)
    out = pipe(clip, sampling_rate=SAMPLE_RATE, window_policy="all", generator=seeded(0), output_type="np", **FAST)
    assert len(out.images) == 1 and out.windows[0]["repeated"] is True and out.windows[0]["end_s"] == pytest.approx(0.7)
    tiled = np.tile(clip, 20)[: pipe.audio_encoder.window_samples]
    same = pipe(tiled, sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    np.testing.assert_allclose(out.images, same, atol=1e-5)


# -- audio plus words -------------------------------------------------------------------------------------------


def test_text_prompt_changes_the_image_and_its_absence_changes_nothing(pipe, text_pipe, capture_unet):
    audio_only = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    no_prompt = text_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    np.testing.assert_array_equal(no_prompt, audio_only)  # bit-identical: nothing appended

    seen = capture_unet(text_pipe)
    painted = text_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, prompt="as an oil painting", generator=seeded(0), output_type="np", **FAST).images
    assert np.abs(painted - audio_only).max() > 1e-3
    states = seen[0]
    assert states.shape == (2, 77 + 77, tiny_models.TEXT_HIDDEN)  # audio positions, then the prompt's
    text = encode_captions(["as an oil painting"], text_pipe.text_encoder, text_pipe.tokenizer)[0]
    empty = encode_captions([""], text_pipe.text_encoder, text_pipe.tokenizer)[0]
    torch.testing.assert_close(states[1, 77:], text)
    torch.testing.assert_close(states[0], torch.cat([text_pipe.audio_encoder.empty_embedding, empty]))

    weak = text_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, prompt="as an oil painting", text_weight=0.3, generator=seeded(0), output_type="np", **FAST).images
    assert np.abs(weak - painted).max() > 1e-4


def test_text_prompt_without_text_encoder_is_explained(pipe):
    with pytest.raises(ValueError, match="text_mixing=True"):
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, prompt="as an oil painting", **FAST)


def test_one_prompt_per_sound(text_pipe):
    with pytest.raises(ValueError, match="one prompt, or one per sound"):
        text_pipe([(SAMPLE_RATE, tone(1.0))], prompt=["a", "b"], **FAST)


# -- ranking ----------------------------------------------------------------------------------------------------


def brightness(image: np.ndarray) -> float:
    return float(np.asarray(image, dtype=np.float32).mean())


def test_best_of_keeps_the_best_candidates_best_first(pipe):
    scorer = BrightnessScorer()
    out = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, num_images_per_prompt=2, best_of=3, scorer=scorer, generator=seeded(0), **FAST)
    assert scorer.calls == [((pipe.audio_encoder.window_samples,), 6)]  # one window, 2 × 3 candidates
    assert len(out.images) == 2 and out.scores.shape == (2,)
    assert out.scores[0] >= out.scores[1]
    assert [brightness(im) for im in out.images] == pytest.approx(out.scores.tolist())
    # the same six candidates without ranking: the two kept are the two brightest
    candidates = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, num_images_per_prompt=6, generator=seeded(0), **FAST).images
    best = sorted((brightness(im) for im in candidates), reverse=True)[:2]
    assert out.scores.tolist() == pytest.approx(best)
    assert best[0] > min(brightness(im) for im in candidates)  # the ranking did have something to choose


def test_ranking_is_per_window(pipe):
    window = pipe.audio_encoder.window_samples
    wave = np.concatenate([tone(window / SAMPLE_RATE, 300.0), tone(window / SAMPLE_RATE, 900.0)])
    out = pipe(wave, sampling_rate=SAMPLE_RATE, window_policy="all", best_of=2, scorer=BrightnessScorer(), generator=seeded(0), **FAST)
    assert [w["window"] for w in out.windows] == [0, 1] and out.scores.shape == (2,)


def test_best_of_needs_a_scorer(pipe):
    with pytest.raises(ValueError, match="needs a `scorer`"):
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, best_of=2, **FAST)


# -- assembly ---------------------------------------------------------------------------------------------------


def test_original_checkpoint_layout_loads(tiny_base, tmp_path, capture_unet):
    # the public original: a plain Wav2Vec2BertModel with adapter, 47 tokens, no stored empty encoding
    tiny_models.tiny_audio_encoder(47).audio_model.save_pretrained(tmp_path / "original")
    assert json.loads((tmp_path / "original" / "config.json").read_text())["model_type"] == "wav2vec2-bert"
    pipe = AudioToImagePipeline.from_base_model(tiny_base, tmp_path / "original", num_audio_tokens=47, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.text_encoder is None and pipe.tokenizer is None  # used for "" once, then dropped
    assert pipe.scheduler.__class__.__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++" and pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.dtype == torch.float32 and pipe.device.type == "cpu"
    base_text = StableDiffusionPipeline.from_pretrained(tiny_base, safety_checker=None)
    empty = encode_captions([""], base_text.text_encoder, base_text.tokenizer)[0]
    torch.testing.assert_close(pipe.audio_encoder.empty_embedding, empty[:48])

    seen = capture_unet(pipe)
    out = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), **FAST)
    assert len(out.images) == 1 and seen[0].shape == (2, 48, tiny_models.TEXT_HIDDEN)

    mixing = AudioToImagePipeline.from_base_model(tiny_base, tmp_path / "original", text_mixing=True, device="cpu")
    assert mixing.text_encoder is not None and mixing.audio_encoder.sequence_length == 48


def test_our_checkpoint_keeps_its_stored_empty_encoding(tiny_base, tmp_path):
    encoder = tiny_models.tiny_audio_encoder(empty_embedding=torch.full((77, tiny_models.TEXT_HIDDEN), 0.5))
    encoder.save_pretrained(tmp_path / "ours")
    pipe = AudioToImagePipeline.from_base_model(tiny_base, tmp_path / "ours", device="cpu")
    assert pipe.text_encoder is None
    torch.testing.assert_close(pipe.audio_encoder.empty_embedding, torch.full((77, tiny_models.TEXT_HIDDEN), 0.5))


# -- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: str(tmp / "missing.wav"), "no such file"),
        (lambda tmp: write(tmp / "empty.wav", b""), "empty"),
        (lambda tmp: write(tmp / "corrupt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40))), "decode|not a readable"),
        (lambda tmp: write(tmp / "notes.txt", "not a sound at all\n" * 20), "a text file, not a sound"),
        (lambda tmp: b"", "empty"),
        (lambda tmp: (SAMPLE_RATE, np.zeros(SAMPLE_RATE, dtype=np.float32)), "silent"),
        (lambda tmp: (SAMPLE_RATE, np.zeros(0, dtype=np.float32)), "no samples"),
        (lambda tmp: (SAMPLE_RATE, np.full(SAMPLE_RATE, np.nan, dtype=np.float32)), "NaN"),
        (lambda tmp: (SAMPLE_RATE, tone(3.0)), "over the 2 s limit"),
    ],
    ids=["missing", "empty-file", "corrupt", "not-audio", "empty-bytes", "silent", "no-samples", "nan", "too-long"],
)
def test_bad_audio_is_named(pipe, tmp_path, make, message):
    with pytest.raises(AudioError, match=message):
        pipe(make(tmp_path), max_audio_seconds=2.0, **FAST)


def test_bad_item_in_a_batch_is_pointed_at(pipe):
    with pytest.raises(AudioError, match="audio 1: .*silent"):
        pipe([(SAMPLE_RATE, tone(1.0)), (SAMPLE_RATE, np.zeros(8000, dtype=np.float32))], **FAST)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"audio": None}, "no audio given"),
        ({"audio": [0.1, 0.2, 0.3]}, "list of numbers"),
        ({"audio": np.ones(100, dtype=np.float32)}, "needs its sampling_rate"),
        ({"height": 36}, "divisible by 8"),
        ({"window_policy": "middle"}, "unknown `window_policy`"),
        ({"num_images_per_prompt": 0}, "positive integer"),
        ({"output_type": "jpeg"}, "unknown `output_type`"),
        ({"scorer": object()}, "score_images"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "callback_on_step_end_tensor_inputs"),
    ],
)
def test_bad_arguments_are_named(pipe, kwargs, message):
    call = {"audio": (SAMPLE_RATE, tone(1.0)), **FAST, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe(**call)


def test_encoder_width_must_match_the_unet():
    audio_config = adapter_settings(
        Wav2Vec2BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_depthwise_kernel_size=3),
        output_hidden_size=24,
    )
    encoder = AudioPromptEncoder(AudioPromptEncoderConfig(audio_config=audio_config))
    with pytest.raises(ValueError, match="24-dim states but the UNet reads 32-dim"):
        AudioToImagePipeline(vae=tiny_models.tiny_vae(), audio_encoder=encoder, feature_extractor=tiny_models.feature_extractor(),
                             unet=tiny_models.tiny_unet(), scheduler=tiny_models.sd21_scheduler())


def test_missing_model_files_are_named(tiny_base, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        AudioToImagePipeline.from_base_model(tmp_path / "no_base", tmp_path / "no_encoder", device="cpu")
    with pytest.raises(FileNotFoundError, match="no audio encoder"):
        AudioToImagePipeline.from_base_model(tiny_base, tmp_path / "no_encoder", device="cpu")


def test_sdpa_by_default_and_attention_slicing_gives_the_same_image():
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = build_pipeline()
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())  # torch SDPA
    plain = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    pipe.enable_attention_slicing(1)
    assert not any(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    sliced = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(0), output_type="np", **FAST).images
    np.testing.assert_allclose(sliced, plain, atol=1e-4)


def test_callback_on_step_end_sees_every_step(pipe):
    steps = []

    def callback(p, i, t, kwargs):
        steps.append((i, kwargs["latents"].shape))
        return {}

    pipe(tone(1.0), sampling_rate=SAMPLE_RATE, callback_on_step_end=callback, **FAST)
    assert steps == [(0, (1, 4, 16, 16)), (1, (1, 4, 16, 16))]


# -- editing a picture with a sound --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def edit_pipe(pipe):
    """Image-to-image on the tiny pipeline's own components."""
    return editing_pipeline(pipe)


def picture(colour) -> Image.Image:
    art = np.zeros((32, 32, 3), dtype=np.uint8)
    art[:, :] = colour
    art[8:24, 8:24] = (255 - np.array(colour)).astype(np.uint8)
    return Image.fromarray(art)


def test_strength_zero_returns_the_picture_and_one_ignores_it(pipe, edit_pipe):
    original = picture((200, 40, 40))
    kept = edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=original, strength=0.0, **FAST).images[0]
    assert np.array_equal(np.asarray(kept), np.asarray(original))
    fresh = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(4), output_type="np", **FAST).images
    for other in (original, picture((10, 200, 90))):
        ignored = edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=other, strength=1.0, generator=seeded(4), output_type="np", **FAST).images
        np.testing.assert_allclose(ignored, fresh, atol=1e-5)


def test_strength_zero_latents_are_scaled_like_every_other_latent_output(pipe, edit_pipe):
    """output_type="latent" gives the UNet's latents (VAE mean × scaling_factor) whatever the strength: those of strength 0
    decode, as any latents do (divided by scaling_factor), back to the picture."""
    original = picture((200, 40, 40))
    latents = edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=original, strength=0.0, output_type="latent", **FAST).images
    with torch.no_grad():
        expected = pipe.vae.encode(pipe.image_processor.preprocess(original, 32, 32)).latent_dist.mean * pipe.vae.config.scaling_factor
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    assert pipe.vae.config.scaling_factor != 1  # else the test could not tell
    torch.testing.assert_close(latents, expected)
    drawn = pipe(tone(1.0), sampling_rate=SAMPLE_RATE, generator=seeded(4), output_type="latent", **FAST).images
    assert latents.shape == drawn.shape and latents.dtype == drawn.dtype
    assert decoded.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("size", [0, -8, 7, 12])
def test_a_size_that_is_no_positive_multiple_of_8_is_refused(pipe, size):
    with pytest.raises(ValueError, match="positive and divisible by 8"):  # 0 used to become the model's own size
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, **{**FAST, "height": size})


def test_a_size_far_beyond_the_model_s_own_is_refused_before_denoising(pipe):
    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    with pytest.raises(ValueError, match=f"`width` {4 * native}: this model draws {native} px pictures and serves at most {2 * native} px"):
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, **{**FAST, "width": 4 * native})


def test_strength_sets_how_far_denoising_starts_from_the_picture(pipe, edit_pipe):
    """As diffusers' image-to-image: the last `strength` share of the steps, from the picture's latents noised to the
    first of them (strength 1: from the noise alone)."""
    from diffusers.utils.torch_utils import randn_tensor

    original = picture((200, 40, 40))
    with torch.no_grad():
        init = pipe.vae.encode(pipe.image_processor.preprocess(original, 32, 32)).latent_dist.mean * pipe.vae.config.scaling_factor
    noise = randn_tensor(init.shape, generator=seeded(4), dtype=init.dtype)
    pipe.scheduler.set_timesteps(8)
    all_steps = pipe.scheduler.timesteps.clone()
    for strength, calls in ((0.25, 2), (0.5, 4), (1.0, 8)):
        seen = []
        handle = pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0][:1].clone()), with_kwargs=True)
        try:
            edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=original, strength=strength, generator=seeded(4), **{**FAST, "num_inference_steps": 8})
        finally:
            handle.remove()
        assert len(seen) == calls
        kept = pipe.scheduler.alphas_cumprod[int(all_steps[8 - calls])]  # the share of the picture left at the first step
        expected = noise if strength == 1 else kept.sqrt() * init + (1 - kept).sqrt() * noise
        torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=1e-5)


def test_the_mask_keeps_every_pixel_outside_it(pipe):
    original = picture((30, 60, 220))
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, 16:] = 255  # only the right half may change
    out = np.asarray(editing_pipeline(pipe, inpaint=True)(tone(1.0), sampling_rate=SAMPLE_RATE, image=original, strength=0.9, mask_image=Image.fromarray(mask),
                          generator=seeded(5), **FAST).images[0])
    assert np.array_equal(out[:, :16], np.asarray(original)[:, :16])
    assert not np.array_equal(out[:, 16:], np.asarray(original)[:, 16:])


def test_one_pipeline_per_job_on_the_same_components(pipe, edit_pipe):
    """Drawing, image-to-image and inpainting are three pipelines, as in diffusers, sharing one set of models (also
    through diffusers' from_pipe); each refuses what is not its job, in one line."""
    inpaint = editing_pipeline(pipe, inpaint=True)
    assert isinstance(edit_pipe, AudioImageToImagePipeline) and isinstance(inpaint, AudioInpaintPipeline)
    assert edit_pipe.unet is pipe.unet is inpaint.unet and edit_pipe.audio_encoder is pipe.audio_encoder
    assert AudioImageToImagePipeline.from_pipe(pipe).vae is pipe.vae
    with pytest.raises(TypeError, match="image"):
        pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=picture((0, 0, 0)), **FAST)
    with pytest.raises(ValueError, match="strength"):
        edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, image=picture((0, 0, 0)), strength=1.5, **FAST)
    with pytest.raises(ValueError, match="`image` must be the PIL image to change"):
        edit_pipe(tone(1.0), sampling_rate=SAMPLE_RATE, **FAST)
    with pytest.raises(ValueError, match="`mask_image` must be a PIL image"):
        inpaint(tone(1.0), sampling_rate=SAMPLE_RATE, image=picture((0, 0, 0)), **FAST)