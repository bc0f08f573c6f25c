"""Audio in: decode any common file to mono float32 at 16 kHz, and cut it to the encoder's window.

Every part of the project (training data, the pipeline, the app) reads sound through `load_audio`, so a
bad file gets the same clear `AudioError` everywhere.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
# SeamlessM4TFeatureExtractor: 25 ms frames (400 samples) every 10 ms (160 samples), stacked in pairs.
FBANK_FRAME_LENGTH = 400
FBANK_HOP_LENGTH = 160
FBANK_STRIDE = 2
SILENCE_PEAK = 1e-4  # below this peak amplitude (-80 dBFS) a clip carries nothing to condition on
DEFAULT_MAX_SECONDS = 600.0


class AudioError(ValueError):
    """A sound that cannot be used, with a message that names the problem and the fix."""


def audio_tokens_for_samples(num_samples: int, num_adapter_layers: int = 2, adapter_stride: int = 2) -> int:
    """Tokens the encoder emits for `num_samples` samples at 16 kHz (the model's real output length).

    The feature extractor pads an odd frame count to even before stacking, and each adapter conv
    (kernel 3, padding 1) maps L to ceil(L / stride). transformers' `_get_feat_extract_output_lengths`
    counts only unpadded frames and so is one short at some lengths; this is what the model returns.
    """
    if num_samples < FBANK_FRAME_LENGTH:
        return 0
    length = 1 + (num_samples - FBANK_FRAME_LENGTH) // FBANK_HOP_LENGTH
    length = math.ceil(length / FBANK_STRIDE)
    for _ in range(num_adapter_layers):
        length = math.ceil(length / adapter_stride)
    return length


def window_samples_for_tokens(num_tokens: int, num_adapter_layers: int = 2, adapter_stride: int = 2) -> int:
    """The shortest clip (in samples) for which the encoder emits exactly `num_tokens` tokens."""
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens}")
    low, high = FBANK_FRAME_LENGTH, FBANK_FRAME_LENGTH
    while audio_tokens_for_samples(high, num_adapter_layers, adapter_stride) < num_tokens:
        high *= 2
    while low < high:  # the token count never decreases with length: bisect for the first hit
        mid = (low + high) // 2
        if audio_tokens_for_samples(mid, num_adapter_layers, adapter_stride) < num_tokens:
            low = mid + 1
        else:
            high = mid
    if audio_tokens_for_samples(low, num_adapter_layers, adapter_stride) != num_tokens:
        raise ValueError(f"no clip length gives exactly {num_tokens} tokens")
    return low


def _decode(data: bytes | str | os.PathLike, name: str) -> tuple[np.ndarray, int]:
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        wave, rate = sf.read(source, dtype="float32", always_2d=True)
        return wave, rate
    except Exception as sf_error:  # libsndfile: wav, flac, ogg/opus, mp3; FFmpeg, if present, for the rest
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioError(
                f"{name}: cannot decode this audio ({sf_error}). Supported without FFmpeg: wav, flac, ogg, mp3. "
                "Convert the file to one of these, or install FFmpeg for other formats."
            ) from sf_error
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", "pipe:0" if isinstance(data, bytes) else str(data),
               "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]
        run = subprocess.run(cmd, input=data if isinstance(data, bytes) else None, capture_output=True)
        if run.returncode != 0 or not run.stdout:
            raise AudioError(
                f"{name}: not a readable audio file (it may be corrupt, truncated or not audio at all). "
                "Check the file, or export it again as wav, flac, ogg or mp3."
            ) from sf_error
        return np.frombuffer(run.stdout, dtype=np.float32)[:, None], SAMPLE_RATE


def to_mono_16k(wave: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Mix down to mono (channels last or first) and resample to 16 kHz; integer PCM is scaled to [-1, 1]."""
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    wave = wave.astype(np.float32, copy=False)
    if wave.size == 0:
        return np.zeros(0, dtype=np.float32)
    if wave.ndim == 2:  # (samples, channels) as decoders give it, or (channels, samples) as torch gives it
        wave = wave.mean(axis=1) if wave.shape[0] >= wave.shape[1] else wave.mean(axis=0)
    elif wave.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D (samples, channels), got shape {wave.shape}")
    if sampling_rate <= 0:
        raise AudioError(f"sampling rate must be positive, got {sampling_rate}")
    if sampling_rate != SAMPLE_RATE and wave.size:
        wave = soxr.resample(wave, sampling_rate, SAMPLE_RATE).astype(np.float32)
    return np.ascontiguousarray(wave)


def load_audio(
    source: str | os.PathLike | bytes | np.ndarray | tuple[int, np.ndarray] | dict,
    sampling_rate: int | None = None,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
) -> np.ndarray:
    """Any sound → mono float32 at 16 kHz.

    `source` is a path, the bytes of a file, an array with its `sampling_rate`, Gradio's
    `(sampling_rate, array)` tuple, or a `datasets` audio record read with `Audio(decode=False)`
    (`{"bytes": ..., "path": ...}`: the bytes if there are any, else the local path). Raises `AudioError` for a missing, empty, corrupt, non-audio, silent
    (unless `allow_silent`) or over-long (past `max_seconds`) sound.
    """
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
        if not source:
            raise AudioError("the audio record has neither bytes nor a path: check the dataset's audio column")
    if isinstance(source, tuple):
        sampling_rate, source = source
    if isinstance(source, np.ndarray) or hasattr(source, "numpy"):
        name = "audio array"
        if sampling_rate is None:
            raise AudioError("an audio array needs its sampling_rate (e.g. 16000, 44100, 48000)")
        wave = np.asarray(source.numpy() if hasattr(source, "numpy") else source)
        rate = int(sampling_rate)
        duration = (wave.shape[0] if wave.ndim == 1 else max(wave.shape)) / rate
    else:
        if isinstance(source, bytes):
            name, data = "audio bytes", source
            if not data:
                raise AudioError("the audio is empty (0 bytes): record or upload a sound")
        else:
            path = Path(source)
            name = path.name
            if not path.is_file():
                raise AudioError(f"{path}: no such file. Check the path.")
            if path.stat().st_size == 0:
                raise AudioError(f"{name}: the file is empty (0 bytes). Record or export the sound again.")
            data = path
        if max_seconds is not None:  # refuse a huge file before decoding it all into memory
            try:
                info = sf.info(io.BytesIO(data) if isinstance(data, bytes) else data)
                if info.frames / info.samplerate > max_seconds:
                    raise AudioError(
                        f"{name}: {info.frames / info.samplerate:.0f} s long, over the {max_seconds:.0f} s limit. "
                        "Trim the clip, or raise the limit (max_seconds / --max-audio-seconds)."
                    )
            except AudioError:
                raise
            except Exception:
                pass  # not a libsndfile format: `_decode` tries FFmpeg and the length is checked after
        wave, rate = _decode(data, name)
        duration = wave.shape[0] / rate
    if max_seconds is not None and duration > max_seconds:
        raise AudioError(
            f"{name}: {duration:.0f} s long, over the {max_seconds:.0f} s limit. "
            "Trim the clip, or raise the limit (max_seconds / --max-audio-seconds)."
        )
    wave = to_mono_16k(wave, rate)
    if wave.size == 0:
        raise AudioError(f"{name}: the sound has no samples. Record or export it again.")
    if not np.all(np.isfinite(wave)):
        raise AudioError(f"{name}: the sound contains NaN or infinite samples; the file is corrupt.")
    if not allow_silent and float(np.abs(wave).max()) < SILENCE_PEAK:
        raise AudioError(f"{name}: the sound is silent (peak below -80 dBFS). Record or upload a sound that can be heard.")
    return wave


def fit_to_window(wave: np.ndarray, window: int, mode: str = "center", rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop (`random`, `center` or `start`) a long clip, or repeat a short one, to exactly `window` samples.

    Repeating instead of zero-padding keeps every token filled with sound, so the encoder never sees a
    tail of silence it was not trained on.
    """
    if wave.size == 0:
        raise AudioError("cannot fit an empty sound to the window")
    if wave.shape[0] < window:
        return np.tile(wave, math.ceil(window / wave.shape[0]))[:window]
    extra = wave.shape[0] - window
    if mode == "random":
        start = int((rng or np.random.default_rng()).integers(0, extra + 1))
    elif mode == "center":
        start = extra // 2
    elif mode == "start":
        start = 0
    else:
        raise ValueError(f"unknown crop mode {mode!r}; use 'random', 'center' or 'start'")
    return wave[start : start + window]


def window_starts(wave: np.ndarray, window: int, policy: str = "first") -> list[int]:
    """Start sample of each window `split_windows` cuts (0 for a clip no longer than the window).

    `first`: the start; `loudest`: the window of highest energy (RMS); `all`: consecutive windows covering
    the clip, the last one ending at the clip's end (overlapping its neighbour) so no window is padded.
    """
    if policy not in ("first", "loudest", "all"):
        raise ValueError(f"unknown window policy {policy!r}; use 'first', 'loudest' or 'all'")
    if wave.shape[0] <= window or policy == "first":
        return [0]
    if policy == "all":
        starts = list(range(0, wave.shape[0] - window + 1, window))
        if starts[-1] + window < wave.shape[0]:
            starts.append(wave.shape[0] - window)
        return starts
    hop = max(window // 4, 1)  # finer than `all` so a short loud event is caught whole
    candidates = list(range(0, wave.shape[0] - window + 1, hop)) + [wave.shape[0] - window]
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    return [max(candidates, key=lambda s: energy[s + window] - energy[s])]


def split_windows(wave: np.ndarray, window: int, policy: str = "first") -> list[np.ndarray]:
    """The windows a long sound is heard through: `first`, the `loudest` (highest RMS), or `all` in order.

    A clip shorter than the window is repeat-padded to it (`fit_to_window`); see `window_starts` for where
    each window begins.
    """
    starts = window_starts(wave, window, policy)
    if wave.shape[0] <= window:
        return [fit_to_window(wave, window)]
    return [wave[s : s + window] for s in starts]
