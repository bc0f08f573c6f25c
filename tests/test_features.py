"""hearing.features.BatchedFeatureExtractor against the library's SeamlessM4TFeatureExtractor (the reference).

The torch extractor computes in float32 where the library computes its spectra in float64, so values are
compared within stated bounds; the attention mask, shapes and dtypes must be identical. Measured on this
repository's CPU machine (torch 2.13, transformers 5.23), seeds 0-19 of the signals below:

- noise, speech-like and played-note clips of 23-98 frames: max |diff| 2.0e-3, all but 1-2 values of a
  batch within 1e-3, mean |diff| < 2e-6; real speech (examples/*.wav, espeak-ng) stays under 2e-4.
- where float32 cannot follow: (1) a perfectly stationary tone, whose mel bins barely vary from frame to
  frame, so the per-bin normalisation divides float32 rounding by a standard deviation of ~1e-3-1e-2 (the
  library's own float32 output is that coarse there); (2) bins ~120 dB below the loudest bin of their frame,
  under float32's FFT rounding floor (preemphasis puts the lowest mel bins 30 dB down); (3) a clip of
  two frames, whose normalised value (a - b) / sqrt((a - b)^2 / 2 + 1e-7) / 2 hangs on the tiny difference of
  two frames. These get looser bounds below, each stated with its test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

from hearing.features import BatchedFeatureExtractor, num_frames

SR = 16_000
# Normalised features of ordinary clips (noise, speech-like, notes; 23-98 frames). Measured over seeds 0-19
# of `mixed_batch`: max |diff| 2.0e-3 (7.4e-4 for seed 0, the one tested), at most 2 of its 47,040 values
# beyond 1e-3 (all in mel bins 1, 2 or 7), mean |diff| at most 1.7e-6.
MAX_DIFF = 5e-3
CLOSE_DIFF, MAX_NOT_CLOSE = 1e-3, 10  # all but at most 10 values within 1e-3
MEAN_DIFF = 1e-5  # a systematic error (a wrong constant, ddof, floor) moves the mean far more than this


def room_noise(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """Noise falling 3 dB an octave above 20 Hz, the low rumble under any real recording, at RMS `level`."""
    spectrum = np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0))
    noise = np.fft.irfft(spectrum, n)
    return level * noise / noise.std()


def int16(wave: np.ndarray) -> np.ndarray:
    """As decoded from a 16-bit file."""
    return (np.round(np.clip(wave, -1, 1) * 32767) / 32768).astype(np.float32)


def speech_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """A voice with a wandering pitch and three formants, syllables with pauses, hiss bursts, a quiet room."""
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = [(rng.uniform(300, 800), 100), (rng.uniform(900, 2200), 150), (rng.uniform(2300, 3200), 250)]
    voice = sum((sum(np.exp(-0.5 * ((k * f0.mean() - f) / b) ** 2) for f, b in formants) + 0.01) * np.sin(k * phase) for k in range(1, 40))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None) ** 2
    hiss = np.diff(rng.standard_normal(n + 1)) * (np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)) > 0.8)
    return int16(0.3 * voice / np.abs(voice).max() * syllables + 0.05 * hiss + room_noise(n, rng, 1e-3))


def note(n: int, rng: np.random.Generator) -> np.ndarray:
    """A played note: five harmonics with vibrato and tremolo, attack and decay, over room noise."""
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(rng.uniform(110, 880) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / SR
    envelope = (1 - np.exp(-t / 0.02)) * np.exp(-t / rng.uniform(0.3, 1.0)) * (1 + 0.2 * np.sin(2 * np.pi * 6 * t))
    return int16(0.3 * envelope * sum(np.sin(k * phase) / k for k in range(1, 6)) + room_noise(n, rng, 1e-2))


def library_features(extractor: SeamlessM4TFeatureExtractor, waves) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the library's NaN for a one-frame clip
        return extractor(waves, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)


def mixed_batch(seed: int) -> list[np.ndarray]:
    """Unequal lengths: frame counts 98, 75 (odd), 60, 42, 23 (odd), 98."""
    rng = np.random.default_rng(seed)
    return [
        (0.1 * rng.standard_normal(16000)).astype(np.float32),
        speech_like(12345, rng),
        note(9999, rng),
        np.concatenate([np.zeros(1600, np.float32), speech_like(5400, rng)]),  # digital silence first
        rng.uniform(-0.5, 0.5, 4000).astype(np.float32),
        note(16079, rng),
    ]


def assert_same_layout(ours, reference):
    assert set(ours.keys()) == {"input_features", "attention_mask"}
    for key in ours:
        assert ours[key].shape == reference[key].shape, key
        assert ours[key].dtype == reference[key].dtype, key
    assert torch.equal(ours["attention_mask"], reference["attention_mask"])


def assert_close(ours: torch.Tensor, reference: torch.Tensor):
    diff = (ours.cpu() - reference).abs()
    assert diff.max() <= MAX_DIFF, f"max |diff| {diff.max():.2e} (per clip {diff.amax((1, 2)).tolist()})"
    assert int((diff > CLOSE_DIFF).sum()) <= MAX_NOT_CLOSE, f"{int((diff > CLOSE_DIFF).sum())} values beyond {CLOSE_DIFF}"
    assert diff.mean() <= MEAN_DIFF, f"mean |diff| {diff.mean():.2e}"


def test_frame_counts_match_the_library_formula():
    samples = torch.tensor([0, 239, 240, 399, 400, 559, 560, 16000, 16079, 16080])
    assert num_frames(samples).tolist() == [0, 0, 0, 0, 1, 1, 2, 98, 98, 99]


def test_matches_the_library_on_a_batch_of_unequal_clips(feature_extractor):
    waves = mixed_batch(seed=0)
    reference = library_features(feature_extractor, waves)
    ours = BatchedFeatureExtractor(feature_extractor)(waves, sampling_rate=SR)

    assert_same_layout(ours, reference)
    assert ours["input_features"].shape == (6, 49, 160)
    # An odd frame count loses its last frame to the mask: 75 frames -> 37 stacked frames kept, not 38.
    assert ours["attention_mask"].sum(1).tolist() == [49, 37, 30, 21, 11, 49]
    assert_close(ours["input_features"], reference["input_features"])


def test_padding_positions_hold_the_padding_value(feature_extractor):
    waves = mixed_batch(seed=1)
    ours = BatchedFeatureExtractor(feature_extractor)(waves)
    reference = library_features(feature_extractor, waves)
    features, mask = ours["input_features"], ours["attention_mask"]
    frames = num_frames(torch.tensor([len(w) for w in waves]))
    for i, count in enumerate(frames.tolist()):  # 10 ms frames past the clip's end are 0 in both
        flat = features[i].reshape(-1, 80)
        assert torch.all(flat[count:] == 0) and torch.all(reference["input_features"][i].reshape(-1, 80)[count:] == 0)
        assert torch.all(flat[:count].abs().sum(1) > 0)
    assert torch.equal(mask, reference["attention_mask"])


def test_settings_come_from_the_extractor():
    """Mel bins, stride and padding value are the extractor's own (here 40 bins, triples, padding -1)."""
    library = SeamlessM4TFeatureExtractor(feature_size=40, num_mel_bins=40, stride=3, padding_value=-1.0)
    waves = mixed_batch(seed=5)
    reference = library_features(library, waves)
    ours = BatchedFeatureExtractor(library)(waves)
    assert_same_layout(ours, reference)
    assert ours["input_features"].shape == (6, 32, 120)
    assert (ours["input_features"] == -1).any()
    assert_close(ours["input_features"], reference["input_features"])


def test_stationary_tones_within_float32_reach(feature_extractor):
    """Noiseless float tones and sweeps: mel bins ~120 dB below the frame's loudest lie under float32's FFT
    rounding, and tone-dominated bins barely vary, so normalisation magnifies rounding. Measured: max 0.19,
    mean 1.4e-3 (the bins concerned hold leakage, not signal). Real recordings carry noise far above that floor."""
    t = lambda n: np.arange(n) / SR  # noqa: E731
    chord = lambda n, f: 0.3 * np.sin(2 * np.pi * f * t(n)) + 0.2 * np.sin(3 * np.pi * f * t(n) + 1) + 0.1 * np.sin(8 * np.pi * f * t(n))  # noqa: E731
    sweep = lambda n, f0, f1: 0.5 * np.sin(2 * np.pi * np.cumsum(f0 * (f1 / f0) ** (t(n) / t(n)[-1])) / SR)  # noqa: E731
    waves = [chord(16000, 220).astype(np.float32), int16(chord(12345, 440)), sweep(9999, 300, 1000).astype(np.float32), int16(sweep(7000, 1000, 300))]
    reference = library_features(feature_extractor, waves)
    ours = BatchedFeatureExtractor(feature_extractor)(waves)
    assert_same_layout(ours, reference)
    diff = (ours["input_features"] - reference["input_features"]).abs()
    assert diff.max() <= 0.5 and diff.mean() <= 5e-3, f"max {diff.max():.2e}, mean {diff.mean():.2e}"


def test_short_clips(feature_extractor):
    """240-399 samples: no frame; 400-559: one frame, NaN in the library (variance with ddof=1 of one
    value) and zeros here; both fully masked. 560 samples: two frames, one stacked frame kept."""
    rng = np.random.default_rng(2)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (3000, 560, 559, 400, 399, 240)]
    reference = library_features(feature_extractor, waves)
    ours = BatchedFeatureExtractor(feature_extractor)(waves)
    assert_same_layout(ours, reference)
    assert ours["attention_mask"].sum(1).tolist() == [8, 1, 0, 0, 0, 0]
    features, expected = ours["input_features"], reference["input_features"]
    one_frame = [2, 3]
    assert torch.isnan(expected[one_frame, 0, :80]).all(), "the library no longer gives NaN for one frame: drop our special case?"
    assert torch.all(features[one_frame] == 0)
    expected[one_frame] = 0
    # Two frames a, b normalise to +-(a - b) / sqrt(2 (a - b)^2 + 4e-7): where a ~ b that multiplies a
    # log-mel difference by up to 1 / (2 sqrt(1e-7)) ~ 1600. Measured 1e-5 here, 2e-2 for other seeds.
    assert (features - expected).abs().max() <= 0.1
    assert_close(features[:1], expected[:1])


def test_clips_under_240_samples_give_no_frames_where_the_library_raises(feature_extractor):
    waves = [np.zeros(100, np.float32), (0.1 * np.random.default_rng(3).standard_normal(1000)).astype(np.float32)]
    with pytest.raises(ValueError):
        library_features(feature_extractor, waves)
    ours = BatchedFeatureExtractor(feature_extractor)(waves)
    assert ours["attention_mask"].tolist() == [[0, 0], [1, 1]]
    assert torch.all(ours["input_features"][0] == 0)


def test_one_clip_and_other_input_types(feature_extractor):
    """A single 1-D clip is a batch of one (as in the library); torch and float64 clips give the same features."""
    waves = mixed_batch(seed=3)[:3]
    extractor = BatchedFeatureExtractor(feature_extractor)
    single = extractor(waves[1])
    assert_same_layout(single, library_features(feature_extractor, waves[1]))
    assert_close(single["input_features"], library_features(feature_extractor, waves[1])["input_features"])
    as_numpy = extractor(waves)["input_features"]
    assert torch.equal(extractor([torch.from_numpy(w) for w in waves])["input_features"], as_numpy)
    assert torch.equal(extractor([w.astype(np.float64) for w in waves])["input_features"], as_numpy)


def test_padded_tensor_with_lengths_matches_the_list(feature_extractor):
    """The GPU-side form: a (B, N) tensor and each row's length; whatever lies past a length is ignored."""
    waves = mixed_batch(seed=4)
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.randn(len(waves), int(lengths.max()) + 1000)  # junk past every clip's end
    padded[:, -500:] = float("nan")
    for row, wave in zip(padded, waves):
        row[: len(wave)] = torch.from_numpy(wave)
    extractor = BatchedFeatureExtractor(feature_extractor)
    from_list, from_tensor = extractor(waves), extractor(padded, lengths=lengths)
    assert torch.equal(from_tensor["attention_mask"], from_list["attention_mask"])
    torch.testing.assert_close(from_tensor["input_features"], from_list["input_features"], atol=1e-5, rtol=0)
    # Without lengths every row counts in full: equal-length clips need none.
    same = padded[:, :8000]
    torch.testing.assert_close(extractor(same)["input_features"], extractor(list(same))["input_features"], atol=1e-5, rtol=0)


def test_rejects_what_it_cannot_do_faithfully(feature_extractor):
    extractor = BatchedFeatureExtractor(feature_extractor)
    wave = np.zeros(4000, np.float32)
    with pytest.raises(ValueError, match="16000"):
        extractor([wave], sampling_rate=48000)
    with pytest.raises(ValueError, match="mono"):
        extractor([np.zeros((2, 4000), np.float32)])  # the library would silently take row 0
    with pytest.raises(ValueError, match="lengths"):
        extractor(torch.zeros(2, 4000), lengths=[4000, 5000])
    with pytest.raises(ValueError, match="lengths"):
        extractor([wave], lengths=[4000])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_library(feature_extractor):
    waves = mixed_batch(seed=0)
    reference = library_features(feature_extractor, waves)
    extractor = BatchedFeatureExtractor(feature_extractor, device="cuda")
    ours = extractor(waves)
    assert ours["input_features"].device.type == "cuda" and ours["attention_mask"].device.type == "cuda"
    assert torch.equal(ours["attention_mask"].cpu(), reference["attention_mask"])
    assert_close(ours["input_features"], reference["input_features"])
    # A tensor on the GPU is computed where it is, with an extractor whose constants are on the CPU.
    padded = torch.zeros(len(waves), max(len(w) for w in waves), device="cuda")
    for row, wave in zip(padded, waves):
        row[: len(wave)] = torch.from_numpy(wave)
    on_gpu = BatchedFeatureExtractor(feature_extractor)(padded, lengths=[len(w) for w in waves])
    assert on_gpu["input_features"].device.type == "cuda"
    assert_close(on_gpu["input_features"], reference["input_features"])


def test_fixed_statistics_normalise_every_clip_alike_and_keep_its_spectral_shape(feature_extractor):
    waves = mixed_batch(seed=7)
    plain = BatchedFeatureExtractor(feature_extractor)
    statistics = plain.log_mel_statistics(waves)
    assert len(statistics["mean"]) == len(statistics["std"]) == 80 and min(statistics["std"]) > 0
    fixed = plain.with_statistics(statistics)
    ours = fixed(waves)
    log_mel, frames = plain._log_mel(*plain._batch(waves, None, None))
    mean, std = (torch.tensor(statistics[key], dtype=torch.float32) for key in ("mean", "std"))
    for i, count in enumerate(frames.tolist()):  # (log energy - the bin's mean) / its deviation, the same for every clip
        flat = ours["input_features"][i].reshape(-1, 80)
        torch.testing.assert_close(flat[:count], (log_mel[i, :count] - mean) / std, atol=1e-4, rtol=1e-4)
        assert torch.all(flat[count:] == 0)
    assert torch.equal(ours["attention_mask"], plain(waves)["attention_mask"])
    # a clip 20 dB louder keeps its per-clip features and moves its fixed ones: the fixed ones hear its level and shape
    louder = [w * 10 for w in waves]
    assert (plain(louder)["input_features"] - plain(waves)["input_features"]).abs().mean() < 0.01
    assert (fixed(louder)["input_features"] - ours["input_features"]).abs().mean() > 0.5
    assert plain.with_statistics(None).mel_mean is None and plain.mel_mean is None  # a copy: the extractor given is unchanged
    with pytest.raises(ValueError, match="mel_statistics"):
        BatchedFeatureExtractor(feature_extractor, mel_statistics={"mean": [0.0] * 80, "std": [0.0] * 80})
    with pytest.raises(ValueError, match="mel_statistics"):
        plain.with_statistics({"mean": [0.0] * 79, "std": [1.0] * 79})
