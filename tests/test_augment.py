"""Training-time feature augmentation (align.augment): frequency warping and masks, drawn per item, reproducibly."""

import numpy as np
import pytest
import torch

from hearing.audio import SAMPLE_RATE
from align.augment import FeatureAugment
from align.data import AudioCaptionCollator, AudioCaptionDataset, caption_vocabulary, empty_batch, features_on_device, pairs_from_folder
from hearing.features import BatchedFeatureExtractor
from tests.conftest import tone, write_folder


def test_a_warp_moves_every_filter_by_its_factor():
    extractor = BatchedFeatureExtractor()
    plain = extractor.mel_filters.argmax(0).float()  # the FFT bin each mel filter listens at most
    filters = extractor._warped_filters([1.0, 1.2, 0.85], torch.device("cpu"))
    np.testing.assert_array_equal(filters[0].numpy(), extractor.mel_filters.numpy())
    inner = slice(5, 60)  # away from the ends, where clamping at the Nyquist bin decides
    for row, factor in ((1, 1.2), (2, 0.85)):
        centres = filters[row].argmax(0).float()
        np.testing.assert_allclose(centres[inner].numpy(), (plain[inner] / factor).numpy(), atol=1.01)


def test_warp_one_changes_nothing_and_another_changes_only_its_clip():
    extractor = BatchedFeatureExtractor()
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(16_000)).astype(np.float32) for _ in range(3)]
    plain = extractor(waves)["input_features"]
    assert torch.equal(extractor(waves, warp=[1.0, 1.0, 1.0])["input_features"], plain)
    warped = extractor(waves, warp=[1.0, 1.15, 1.0])["input_features"]
    assert torch.equal(warped[0], plain[0]) and torch.equal(warped[2], plain[2])
    assert (warped[1] - plain[1]).abs().max() > 0.5


def test_masks_zero_the_same_bands_in_both_stacked_frames():
    extractor = BatchedFeatureExtractor()
    augment = FeatureAugment(max_warp=0.0, freq_masks=2, freq_mask_bins=10)
    waves = [tone(1.0, 300.0, amplitude=0.5) + 0.01 * np.random.default_rng(1).standard_normal(16_000).astype(np.float32)]
    features = augment.features(extractor, waves, [7], SAMPLE_RATE)["input_features"][0]
    _, bands = augment.draw(7, 80)
    masked = {b for start, width in bands for b in range(start, start + width)}
    assert masked, "seed 7 draws at least one non-empty band"
    for half in (features[:, :80], features[:, 80:]):
        zero_bins = {b for b in range(80) if bool((half[:, b] == 0).all())}
        assert zero_bins == masked


def test_random_eq_colours_fixed_statistics_features_and_leaves_per_clip_ones_and_other_draws_alone():
    """Per-clip normalisation removes any per-bin offset of log energy, so only an extractor with fixed statistics hears
    the equalisation; turning it on changes neither the warp nor the masks a seed draws."""
    waves = [tone(1.0, 300.0, amplitude=0.5) + 0.01 * np.random.default_rng(1).standard_normal(16_000).astype(np.float32)]
    per_clip = BatchedFeatureExtractor()
    fixed = per_clip.with_statistics(per_clip.log_mel_statistics(waves))
    coloured = FeatureAugment(max_eq_db=12.0)
    eq = coloured.draw_eq(7, 80)
    assert eq.shape == (80,) and 0.1 < np.abs(eq).max() <= 2 * 12.0 * np.log(10) / 10  # tilt and bell, each at most 12 dB
    assert np.ptp(eq) > 0.1 and not np.allclose(eq, coloured.draw_eq(8, 80))
    torch.testing.assert_close(coloured.features(per_clip, waves, [7], SAMPLE_RATE)["input_features"], per_clip(waves)["input_features"],
                               atol=1e-3, rtol=0)
    heard = coloured.features(fixed, waves, [7], SAMPLE_RATE)["input_features"][0]
    plain = fixed(waves)["input_features"][0]
    std = fixed.mel_std
    torch.testing.assert_close(heard[:, :80] - plain[:, :80], torch.as_tensor(eq, dtype=torch.float32).expand(heard.shape[0], 80) / std,
                               atol=1e-4, rtol=1e-4)  # the offset, in units of each bin's fixed spread
    both = FeatureAugment(max_warp=0.15, freq_masks=2, max_eq_db=12.0)
    assert both.draw(7, 80) == FeatureAugment(max_warp=0.15, freq_masks=2).draw(7, 80)


def test_collator_augments_training_items_reproducibly_and_never_evaluation_items(tmp_path):
    files = {f"{i}.wav": (SAMPLE_RATE, tone(0.4, 300.0 + 100 * i, amplitude=0.5) + 0.01 * np.random.default_rng(i).standard_normal(6400).astype(np.float32))
             for i in range(4)}
    rows = [{"file_name": name, "caption": f"caption {i}"} for i, name in enumerate(files)]
    pairs = pairs_from_folder(write_folder(tmp_path, rows, files))
    extractor = BatchedFeatureExtractor()
    augment = FeatureAugment(max_warp=0.15, freq_masks=2)
    collate = AudioCaptionCollator(extractor, augment=augment)
    train = AudioCaptionDataset(pairs, caption_vocabulary(pairs), 8000, crop="random", seed=3)
    first = collate([train[i] for i in range(4)])["input_features"]
    assert torch.equal(collate([train[i] for i in range(4)])["input_features"], first)  # same seed, epoch, item: same draw
    plain = AudioCaptionCollator(extractor)([train[i] for i in range(4)])["input_features"]
    assert not torch.equal(first, plain)
    train.set_epoch(1)
    assert not torch.equal(collate([train[i] for i in range(4)])["input_features"], first)  # a new draw every epoch
    held_out = AudioCaptionDataset(pairs, caption_vocabulary(pairs), 8000, crop="center")
    items = [held_out[i] for i in range(4)]
    assert torch.equal(collate(items)["input_features"], AudioCaptionCollator(extractor)(items)["input_features"])
    assert AudioCaptionCollator(extractor, augment=FeatureAugment()).augment is None  # all off: the plain path


def test_features_on_the_device_equal_the_loaders_augmentation_included():
    """align.train --features-on device: the batch brings padded sound, and the features computed from it after the
    batch arrives are exactly those the loader's workers compute (clips of unequal length, warps and masks alike)."""
    rng = np.random.default_rng(0)
    items = [{"wave": (0.1 * rng.standard_normal(5000 + 1500 * i)).astype(np.float32), "caption_id": i, "caption": f"caption {i}",
              "augment_seed": int(rng.integers(2**63))} for i in range(4)] + [None]
    extractor = BatchedFeatureExtractor()
    augment = FeatureAugment(max_warp=0.15, freq_masks=2)
    results = {}
    for used in (augment, None):
        in_loader = AudioCaptionCollator(extractor, fill_to=6, augment=used)(items)
        sound = AudioCaptionCollator(None, fill_to=6, augment=used)(items)
        assert "input_features" not in sound and sound["waves"].shape == (6, 9500) and sound["skipped"] == 1
        assert sound["lengths"].tolist() == [5000, 6500, 8000, 9500, 5000, 6500]
        on_device = features_on_device(sound, extractor, used)
        assert torch.equal(on_device["input_features"], in_loader["input_features"])
        assert torch.equal(on_device["attention_mask"], in_loader["attention_mask"])
        assert sound["caption_ids"].tolist() == in_loader["caption_ids"].tolist()
        results[used is None] = on_device["input_features"]
    assert not torch.equal(results[False], results[True])  # the augmentation did act
    assert empty_batch(AudioCaptionCollator(None)([None, None])) and empty_batch(AudioCaptionCollator(extractor)([None]))


def test_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="max_warp"):
        FeatureAugment(max_warp=0.6)
    with pytest.raises(ValueError, match="freq_masks"):
        FeatureAugment(freq_masks=-1)
    with pytest.raises(ValueError, match="max_eq_db"):
        FeatureAugment(max_eq_db=40.0)


def test_training_refuses_augmentation_out_of_range_before_any_model_loads(capsys):
    from align.train import parse_args

    for flag, value in (("--random-eq", "40"), ("--warp-frequencies", "0.7"), ("--freq-masks", "-2")):
        with pytest.raises(SystemExit):
            parse_args(["--data-dir", "some/folder", flag, value])
        assert flag in capsys.readouterr().err
