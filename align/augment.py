"""Training-time feature augmentation: other voices (frequency warping), lost bands (frequency masks), other colours.

An encoder that hears few speakers learns their voices along with their words. Cheap changes to each
training clip's features, drawn anew every epoch, make it hear more:

- **vocal tract length perturbation** (VTLP, Jaitly & Hinton 2013): the spectrum's frequency axis is scaled by
  a factor from [1 − max_warp, 1 + max_warp] before the mel filter bank, as a longer or shorter vocal tract moves
  every formant (`BatchedFeatureExtractor(..., warp=...)`);
- **frequency masks** (SpecAugment, Park et al. 2019): `freq_masks` bands of up to `freq_mask_bins` mel bins are set
  to 0 (the per-bin mean after normalisation), as a microphone or a room loses a band;
- **random equalisation**: each clip's log-mel energies tilted across the band and raised or lowered around one
  frequency by up to `max_eq_db`, as another microphone, game or mastering colours a recording. Features normalised
  per clip cannot hear it (the per-bin mean goes, and the offset with it); features normalised by fixed statistics,
  which keep a sound's spectral shape, would otherwise learn each source's colour along with its class.

Time masks need nothing here: w2v-BERT's config applies them to its hidden states in training (`mask_time_prob`).
Each draw comes from the item's `augment_seed` (which `align.data` and `align.streaming` derive from the run's
seed, the epoch and the item, as they do its crop), so a resumed run repeats exactly what it would have done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureAugment:
    max_warp: float = 0.0  # VTLP: factors from [1 - max_warp, 1 + max_warp]; 0 turns it off
    freq_masks: int = 0  # SpecAugment: bands masked per clip; 0 turns it off
    freq_mask_bins: int = 10  # each band at most this many mel bins wide
    max_eq_db: float = 0.0  # random equalisation: tilt and bell gains up to this many dB; 0 turns it off

    def __post_init__(self):
        if not 0.0 <= self.max_warp < 0.5:
            raise ValueError(f"max_warp must be in [0, 0.5), got {self.max_warp}")
        if self.freq_masks < 0 or self.freq_mask_bins < 1:
            raise ValueError(f"freq_masks must be >= 0 and freq_mask_bins >= 1, got {self.freq_masks}, {self.freq_mask_bins}")
        if not 0.0 <= self.max_eq_db <= 24.0:
            raise ValueError(f"max_eq_db must be in [0, 24], got {self.max_eq_db}")

    @property
    def active(self) -> bool:
        return self.max_warp > 0 or self.freq_masks > 0 or self.max_eq_db > 0

    def draw(self, seed: int, num_bins: int) -> tuple[float, list[tuple[int, int]]]:
        """One clip's warp factor and its masked bands [(first bin, width), ...]."""
        rng = np.random.default_rng(seed)
        warp = float(rng.uniform(1 - self.max_warp, 1 + self.max_warp)) if self.max_warp > 0 else 1.0
        bands = []
        for _ in range(self.freq_masks):
            width = int(rng.integers(0, min(self.freq_mask_bins, num_bins) + 1))
            bands.append((int(rng.integers(0, num_bins - width + 1)), width))
        return warp, bands

    def draw_eq(self, seed: int, num_bins: int) -> np.ndarray:
        """One clip's equalisation: an offset of natural-log energy per mel bin, a tilt across the band plus one bell
        (drawn from its own stream of the seed, so that turning it on leaves the warp and masks as they were)."""
        rng = np.random.default_rng([seed, 1])
        position = np.linspace(-0.5, 0.5, num_bins)
        tilt = rng.uniform(-self.max_eq_db, self.max_eq_db) * position
        centre, width = rng.uniform(0, num_bins), rng.uniform(3, 15)
        bell = rng.uniform(-self.max_eq_db, self.max_eq_db) * np.exp(-0.5 * ((np.arange(num_bins) - centre) / width) ** 2)
        return (tilt + bell) * np.log(10) / 10  # dB of power → natural log, as the features' log energies

    def features(self, extractor, waves, seeds: list[int], sampling_rate: int, lengths=None) -> dict:
        """`extractor(waves)` with each clip warped, equalised and masked by its own draw; `waves` a list of clips, or a
        (B, N) tensor with each row's valid `lengths` (hearing.features.BatchedFeatureExtractor)."""
        num_bins = extractor.mel_filters.shape[1]
        draws = [self.draw(seed, num_bins) for seed in seeds]
        where = {} if lengths is None else {"lengths": lengths}
        eq = np.stack([self.draw_eq(seed, num_bins) for seed in seeds]) if self.max_eq_db > 0 else None
        batch = extractor(waves, sampling_rate=sampling_rate, return_tensors="pt", return_attention_mask=True,
                          warp=[warp for warp, _ in draws] if self.max_warp > 0 else None, eq=eq, **where)
        features = batch["input_features"]  # (B, T, num_bins * stride): stacked frames repeat the bins
        stacked = features.shape[-1] // num_bins
        for row, (_, bands) in enumerate(draws):
            for start, width in bands:
                for k in range(stacked):
                    features[row, :, k * num_bins + start : k * num_bins + start + width] = 0.0
        return {"input_features": features, "attention_mask": batch["attention_mask"]}


def item_seed(rng: np.random.Generator | None) -> int | None:
    """The seed an item's augmentation is drawn from: from its own crop generator (None in evaluation)."""
    return None if rng is None else int(rng.integers(2**63))

