"""w2v-BERT input features for a whole batch in torch, on the device the audio is on.

`BatchedFeatureExtractor` reproduces `transformers.SeamlessM4TFeatureExtractor` (numpy, one clip at a time)
with one batched STFT in float32, so features can be computed on the GPU that trains the encoder:

    extractor = BatchedFeatureExtractor(SeamlessM4TFeatureExtractor())    # or BatchedFeatureExtractor()
    batch = extractor(waves, sampling_rate=16000)                         # list of 1-D clips, any lengths
    batch = extractor(padded_waves.cuda(), lengths=lengths)               # (B, N) tensor + valid lengths
    batch["input_features"]  # (B, T, 160) float32: 80 log-mel bins at 10 ms, frames stacked in pairs
    batch["attention_mask"]  # (B, T) int32, the library's dtype: 1 on the stacked frames the library keeps

What the library does, step by step (transformers 5.x, `_extract_fbank_features` + `spectrogram` + `pad`):
clip × 2**15 (int16 scale) → frames of 400 samples every 160 (no centring; 1 + (N - 400) // 160 frames) →
per frame: subtract its mean, preemphasis 0.97 (first sample × 0.03), povey window → 512-point FFT →
power → Kaldi mel filter bank → max(·, float32 eps) → natural log → per clip, per mel bin: mean and
variance (ddof=1) over the clip's frames, (x - mean) / sqrt(var + 1e-7) → pad the batch with zeros to the
longest frame count rounded up to even → stack frame pairs → the mask keeps a stacked frame only when both
its frames are real (so a clip with an odd frame count loses its last frame to the mask; for another
stride the library keeps a stack when its second frame is real, and drops frames that do not fill one).

Where this differs from the library, on purpose: a clip of exactly one frame (400-559 samples) gives NaN
features in the library (variance with ddof=1 of one value); here it gives zeros (its mask is 0 in both).
Clips under 240 samples make the library raise; here they give zero frames, fully masked, like 240-399.
Each clip must be 1-D (mono): the library takes row 0 of a 2-D clip (right for (channels, samples), a
crash for soundfile's (samples, channels)), so a 2-D clip raises here. A (B, N) torch tensor is a batch
here, as a (B, N) numpy array is in both; the library reads that tensor as one stereo clip and returns
the first row's features alone.

float32 against the library's float64 spectra (tests/test_features.py states the bounds): normalised
features of speech, noise and notes agree within ~1e-3 (max 2e-3, mean 2e-6); mel bins ~120 dB below
the loudest bin of their frame lie under float32's FFT rounding, so noiseless synthetic tones can differ
by up to ~0.2 there. The mel projection is a matmul: with TF32 matmuls enabled on a GPU
(`torch.backends.cuda.matmul.allow_tf32`) its 10-bit mantissas would add ~1e-3 relative error to the mel
energies (not measured).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from transformers import BatchFeature, SeamlessM4TFeatureExtractor

# Fixed in the library's `_extract_fbank_features` (not in its config): Kaldi-style 25 ms / 10 ms at 16 kHz.
FRAME_LENGTH = 400
HOP_LENGTH = 160
FFT_LENGTH = 512
PREEMPHASIS = 0.97
INT16_SCALE = 2.0**15
MEL_FLOOR = 1.192092955078125e-07  # float32 eps, the library's floor before the log
VARIANCE_EPS = 1e-7  # added to the per-bin variance before the square root
PAD_TO_MULTIPLE_OF = 2  # the library's default for `pad_to_multiple_of`


def pad_waves(waves: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """1-D numpy clips → a (B, N) float32 array zero-padded to the longest, and each clip's length."""
    sizes = [int(w.shape[0]) for w in waves]
    padded = np.zeros((len(waves), max(sizes)), dtype=np.float32)
    for row, wave in zip(padded, waves):
        row[: wave.shape[0]] = wave
    return padded, sizes


def num_frames(num_samples: torch.Tensor) -> torch.Tensor:
    """10 ms frames the library computes for clips of `num_samples` samples (0 where it makes none or raises)."""
    return torch.clamp(1 + torch.div(num_samples - FRAME_LENGTH, HOP_LENGTH, rounding_mode="floor"), min=0)


class BatchedFeatureExtractor:
    """`SeamlessM4TFeatureExtractor` for a batch at once, in torch float32, on any device.

    Args:
        extractor: the library extractor whose settings (mel filter bank, window, stride, padding value)
            are used; `SeamlessM4TFeatureExtractor()` (w2v-BERT 2.0's defaults) when omitted.
        device: where the constant matrices live and where features are computed when the audio is not
            already a tensor (numpy input); a torch tensor's own device wins unless `device` is given.
        mel_statistics: {"mean": [...], "std": [...]}, one value per mel bin (`log_mel_statistics`): normalise
            every clip by these instead of by its own frames (the library's way). An expert trained on such
            features stores them in its config (hearing.encoder).
    """

    def __init__(self, extractor: SeamlessM4TFeatureExtractor | None = None, device: torch.device | str | None = None,
                 mel_statistics: dict | None = None):
        extractor = extractor if extractor is not None else SeamlessM4TFeatureExtractor()
        if extractor.padding_side != "right":
            raise ValueError(f"only right padding is supported, the extractor pads on the {extractor.padding_side}")
        self.sampling_rate = extractor.sampling_rate
        self.stride = extractor.stride
        if self.stride < 2:
            raise ValueError(f"stride {self.stride}: the library's attention mask is empty below stride 2")
        self.padding_value = float(extractor.padding_value)
        # The library's own constants (built in its __init__ by audio_utils' mel_filter_bank / window_function).
        self.window = torch.as_tensor(extractor.window, dtype=torch.float32)  # (400,) povey
        if self.window.shape != (FRAME_LENGTH,) or self.window[0] != 0:
            raise ValueError("expected the library's 400-sample povey window, which starts at 0 (see _log_mel)")
        self.mel_filters = torch.as_tensor(extractor.mel_filters, dtype=torch.float32)  # (257, num_mel_bins)
        self.device = torch.device("cpu")
        self.mel_mean, self.mel_std = self._statistics(mel_statistics)
        if device is not None:
            self.to(device)

    def with_statistics(self, mel_statistics: dict | None) -> BatchedFeatureExtractor:
        """The same extractor normalising by `mel_statistics` (None: each clip by its own frames)."""
        other = copy.copy(self)
        other.mel_mean, other.mel_std = self._statistics(mel_statistics)
        return other

    def _statistics(self, mel_statistics: dict | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`mel_statistics` as (mean, std) tensors on the extractor's device, checked; (None, None) for per-clip."""
        if mel_statistics is None:
            return None, None
        num_bins = self.mel_filters.shape[1]
        mean, std = (torch.as_tensor(mel_statistics[key], dtype=torch.float32, device=self.device) for key in ("mean", "std"))
        if mean.shape != (num_bins,) or std.shape != (num_bins,) or bool((std <= 0).any()):
            raise ValueError(f"mel_statistics must hold {num_bins} means and {num_bins} positive standard deviations")
        return mean, std

    def to(self, device: torch.device | str) -> BatchedFeatureExtractor:
        """Move the constant matrices (and the default device for numpy input) to `device`."""
        self.device = torch.device(device)
        self.window, self.mel_filters = self.window.to(self.device), self.mel_filters.to(self.device)
        if self.mel_mean is not None:
            self.mel_mean, self.mel_std = self.mel_mean.to(self.device), self.mel_std.to(self.device)
        return self

    def __call__(
        self,
        waves: Sequence[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
        lengths: Sequence[int] | torch.Tensor | None = None,
        device: torch.device | str | None = None,
        sampling_rate: int | None = None,
        return_tensors: str = "pt",
        return_attention_mask: bool = True,
        warp: Sequence[float] | torch.Tensor | None = None,
        eq: Sequence[Sequence[float]] | torch.Tensor | None = None,
    ) -> BatchFeature:
        """Features for a batch of mono clips at the extractor's sampling rate.

        `waves` is a list of 1-D clips (numpy or torch, any lengths), one 1-D clip, or a (B, N) tensor or array
        whose row i holds `lengths[i]` valid samples (all N when `lengths` is None). `return_tensors` and
        `return_attention_mask` exist so this can stand in for the library extractor; only "pt" is offered.
        `warp` (training augmentation, `align.augment`): one factor per clip by which its spectrum's frequency
        axis is scaled before the mel filter bank (vocal tract length perturbation); 1.0 changes nothing.
        `eq` (training augmentation too): one offset per clip and mel bin added to its log-mel energies, as another
        microphone or mastering colours a recording; the per-clip normalisation removes any such offset exactly,
        so only fixed `mel_statistics` hear it.
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(f"audio must be sampled at {self.sampling_rate} Hz, got {sampling_rate}")
        if return_tensors != "pt":
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        audio, lengths = self._batch(waves, lengths, device)
        features, frames = self._log_mel(audio, lengths, warp)
        if eq is not None:
            features = features + torch.as_tensor(eq, dtype=features.dtype, device=features.device)[:, None, :]
        features = self._normalize(features, frames)
        features, mask = self._stack(features, frames)
        out = {"input_features": features}
        if return_attention_mask:
            out["attention_mask"] = mask
        return BatchFeature(out)

    def _batch(self, waves, lengths, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) float32 audio padded with zeros and (B,) valid lengths, on the device to compute on."""
        if isinstance(waves, (np.ndarray, torch.Tensor)) and waves.ndim == 1:
            waves = [waves]
        if isinstance(waves, (np.ndarray, torch.Tensor)):
            if waves.ndim != 2:
                raise ValueError(f"a batch tensor must be (batch, samples), got shape {tuple(waves.shape)}")
            audio = torch.as_tensor(waves)
            device = torch.device(device) if device is not None else (audio.device if isinstance(waves, torch.Tensor) else self.device)
            audio = audio.to(device=device, dtype=torch.float32)
            if lengths is None:
                lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=device)
            lengths = torch.as_tensor(lengths, dtype=torch.long).to(device)
            if lengths.shape != (audio.shape[0],) or bool((lengths > audio.shape[1]).any()) or bool((lengths < 0).any()):
                raise ValueError(f"lengths must be {audio.shape[0]} values in [0, {audio.shape[1]}], got {lengths.tolist()}")
            return audio, lengths  # a clip's frames end within its length: what lies beyond never reaches them
        if lengths is not None:
            raise ValueError("lengths apply to a (batch, samples) tensor; a list of clips carries its own lengths")
        if len(waves) == 0:
            raise ValueError("no audio given")
        for i, wave in enumerate(waves):
            if wave.ndim != 1:
                raise ValueError(f"clip {i} has shape {tuple(wave.shape)}: clips must be mono 1-D arrays (mix down or pick a channel)")
        if device is None:
            device = next((w.device for w in waves if isinstance(w, torch.Tensor)), self.device)
        device = torch.device(device)
        sizes = [int(w.shape[0]) for w in waves]
        if all(isinstance(w, np.ndarray) for w in waves):  # fill on the host, one copy to the device
            audio = torch.from_numpy(pad_waves(waves)[0]).to(device)
        else:
            audio = torch.zeros((len(waves), max(sizes)), dtype=torch.float32, device=device)
            for row, wave in zip(audio, waves):
                row[: wave.shape[0]] = torch.as_tensor(wave).to(device=device, dtype=torch.float32)
        return audio, torch.tensor(sizes, dtype=torch.long, device=device)

    def _warped_filters(self, warp: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, 257, mel): the mel filter bank read at frequency bin f × factor, one factor per clip, so energy
        at f reaches the filter that listened at f × factor (a spectrum stretched or squeezed in frequency)."""
        filters = self.mel_filters.to(device)
        factors = torch.as_tensor(warp, dtype=torch.float32, device=device)[:, None]  # (B, 1)
        position = (torch.arange(filters.shape[0], device=device, dtype=torch.float32) * factors).clamp(max=filters.shape[0] - 1)
        low = position.floor().long()
        high = (low + 1).clamp(max=filters.shape[0] - 1)
        share = (position - low)[..., None]
        return filters[low] * (1 - share) + filters[high] * share

    def _log_mel(self, audio: torch.Tensor, lengths: torch.Tensor, warp=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, F, mel) log-mel energies of every frame of the padded batch, and each clip's frame count (B,)."""
        counts = num_frames(lengths)
        batch, num_bins = audio.shape[0], self.mel_filters.shape[1]
        if audio.shape[1] < FRAME_LENGTH:  # no clip long enough for one frame
            return audio.new_zeros((batch, 0, num_bins)), counts
        window, mel_filters = self.window.to(audio.device), self.mel_filters.to(audio.device)
        x = audio * INT16_SCALE
        # Per frame, with m its mean (the DC offset the library removes), the library's preemphasis gives
        # y[n] = (x[n] - m) - 0.97 (x[n-1] - m) = u[n] - 0.03 m, where u[n] = x[n] - 0.97 x[n-1] is frame-free,
        # so u is computed once over the whole clip. Its first sample (0.03 (x[0] - m)) meets the window's
        # first value, 0: any finite value does. u as (x[n] - x[n-1]) + 0.03 x[n-1] spares float32 the
        # cancellation of two large, nearly equal terms (mean |diff| from the library 5-10 % lower).
        u = torch.empty_like(x)
        u[:, 0] = x[:, 0]
        u[:, 1:] = torch.add(x[:, 1:] - x[:, :-1], x[:, :-1], alpha=1 - PREEMPHASIS)
        mean = x.unfold(-1, FRAME_LENGTH, HOP_LENGTH).mean(dim=-1, keepdim=True)  # (B, F, 1)
        frames = u.unfold(-1, FRAME_LENGTH, HOP_LENGTH) * window  # (B, F, 400): w (u - 0.03 m)
        frames.addcmul_(mean, window, value=-(1 - PREEMPHASIS))
        spectrum = torch.fft.rfft(frames, n=FFT_LENGTH)  # (B, F, 257)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = power @ mel_filters if warp is None else power @ self._warped_filters(warp, audio.device)
        return torch.log(torch.clamp(mel, min=MEL_FLOOR)), counts

    def log_mel_statistics(self, waves: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> dict[str, list[float]]:
        """Each mel bin's mean and standard deviation of log energy over every frame of `waves` (a list of mono
        clips or a (B, N) batch): the `mel_statistics` that normalise all clips alike."""
        audio, lengths = self._batch(waves, None, None)
        features, frames = self._log_mel(audio, lengths)
        valid = torch.arange(features.shape[1], device=features.device)[None] < frames[:, None]
        energies = features[valid].double()
        return {"mean": energies.mean(0).tolist(), "std": energies.std(0).clamp(min=1e-3).tolist()}

    def _normalize(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Per clip and mel bin: zero mean, unit variance (ddof=1) over the clip's own frames; padding_value elsewhere.
        With `mel_statistics`, every clip by the same per-bin mean and deviation instead: the clip's own spectral
        shape (bright or dull, which bands are loud) stays in the features, where the per-clip normalisation, made
        for speech, removes it."""
        valid = (torch.arange(features.shape[1], device=features.device) < frames[:, None])[..., None]  # (B, F, 1)
        if self.mel_mean is not None:
            normed = (features - self.mel_mean.to(features)) / self.mel_std.to(features)
            return torch.where(valid, normed, torch.full_like(normed, self.padding_value))
        count = frames.to(features.dtype)[:, None, None]
        features = torch.where(valid, features, 0.0)  # frames past a clip's end (even NaN) do not count
        mean = features.sum(dim=1, keepdim=True) / count.clamp(min=1)
        centred = torch.where(valid, features - mean, 0.0)
        variance = centred.square().sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        normed = centred / torch.sqrt(variance + VARIANCE_EPS)
        keep = valid & (count > 1)  # one frame has no ddof=1 variance: the library gives NaN, we give padding
        return torch.where(keep, normed, torch.full_like(normed, self.padding_value))

    def _stack(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to the longest clip (rounded up to even), stack `stride` frames, and the stacked attention mask."""
        batch, _, num_bins = features.shape
        longest = int(frames.max())
        padded = -(-longest // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
        features = features[:, :longest]
        if padded > longest:
            features = torch.cat([features, features.new_full((batch, padded - longest, num_bins), self.padding_value)], dim=1)
        stacked = padded // self.stride  # the library drops a remainder that does not fill a stack
        features = features[:, : stacked * self.stride].reshape(batch, stacked, num_bins * self.stride)
        # The library keeps a stacked frame when its second 10 ms frame is real (`indices % stride == 1`):
        # for the default stride 2, when both are.
        mask = torch.arange(stacked, device=features.device) * self.stride + 1 < frames[:, None]
        return features, mask.to(torch.int32)
