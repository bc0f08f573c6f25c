"""Audio in: decode any common file to mono float32 at 16 kHz, and cut it to the encoder's window.

Every part of the project (training data, the pipeline, the app) reads sound through `load_audio`, so a
bad file gets the same clear `AudioError` everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
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
WINDOW_POLICIES = ("first", "loudest", "all")  # how a sound longer than the window is heard (window_starts)
# `first` hears a sound whole when it lasts at most this many windows from its first sound to its last, sped up to fit at
# the same pitch: a spoken request of 3-4.5 s ("could you please draw a blue square in the middle") keeps its last words,
# which a cut at the window's end would lose (world/README.md, "Requests in other words, and longer than the window")
SQUEEZE_MAX = 1.5


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


class AudioWarning(UserWarning):
    """A sound that can be used but is not what its file promised (truncated, header out of step with the data)."""


class AudioTooLong(AudioError):
    """Longer than the caller's limit; callers with a flag for the limit name it in their own message."""


class TooManyWindows(AudioError):
    """A sound that the window policy would cut into more windows than the caller allows."""


# What a file's first bytes say it is, when it is plainly not audio: named in the refusal, so a user who renamed
# an image learns what they uploaded instead of a decoder's complaint.
NOT_AUDIO_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (or an office document)"), (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program"), (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ", "an xz archive"),
)
DECODE_BLOCK_VALUES = 1 << 20  # samples × channels decoded at a time: 4 MB of float32, whatever the file's shape
MIN_SECONDS = 0.1  # shorter than this there is nothing to hear: one window is ~6 s of repeats of it
MAX_CHANNELS = 64
MAX_SAMPLING_RATE = 768_000
_DECODER_CHATTER = re.compile(rb"^(Note: |Warning: |\[src/|.*Illegal Audio-MPEG-Header|.*mpg123|.*Big trouble).*$", re.M)
_stderr_lock = threading.Lock()


def _sniff(head: bytes) -> str | None:
    """What a file is when its first bytes show it is not audio ("a PNG image", "a text file"), else None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for signature, kind in NOT_AUDIO_SIGNATURES:
        if head.startswith(signature):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\r\n\t\f" for c in text):
        return "a text file"
    return None


@contextlib.contextmanager
def _quiet_decoders():
    """Hold back what C decoders (libsndfile's mpg123) print to stderr while a file is read.

    mpg123 writes "Illegal Audio-MPEG-Header" lines straight to file descriptor 2 when it probes a file that is
    not MPEG, which would land in the CLI's, the app's and training's output. Anything else written to stderr
    meanwhile (another thread's log line) is passed on afterwards.
    """
    with _stderr_lock, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = _DECODER_CHATTER.sub(b"", held.read()).strip()
            if rest:
                sys.stderr.write(rest.decode("utf-8", "replace") + "\n")


def _check_file(path: Path) -> None:
    """Refuse what is not a readable regular file, saying which of the usual mistakes it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise AudioError(f"{path}: a symbolic link to a file that does not exist. Give the path of the sound itself.") from None
        raise AudioError(f"{path}: no such file. Check the path.") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise AudioError(f"{path}: a symbolic link that points back to itself (a loop). Give the path of the sound itself.") from None
        raise AudioError(f"{path}: cannot be read ({error.strerror}). Check the path and its permissions.") from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioError(f"{path}: a folder, not a sound file. Give the path of one audio file.")
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(f"{path}: not a regular file (a pipe, socket or device). Save the sound to a file and give its path.")
    if info.st_size == 0:
        raise AudioError(f"{path.name}: the file is empty (0 bytes). Record or export the sound again.")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: cannot be read (permission denied). Check the file's permissions.")


def _too_long(name: str, seconds: float, max_seconds: float) -> AudioTooLong:
    return AudioTooLong(f"{name}: {seconds:.0f} s long, over the {max_seconds:.0f} s limit. Trim the sound to the part you want.")


def _header_shortfall(sound: sf.SoundFile) -> tuple[int, int] | None:
    """(bytes the header claims, bytes the file holds) for the data chunk, when libsndfile found fewer than claimed."""
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", sound.extra_info, re.M)
    if match and int(match.group(2)) < int(match.group(1)):
        return int(match.group(1)), int(match.group(2))
    return None


def _read_mono_16k(sound: sf.SoundFile, name: str, max_seconds: float | None) -> np.ndarray:
    """Decode block by block, mixing to mono and resampling as it goes: memory follows the 16 kHz mono result
    (at most `max_seconds` of it), never the file's channels × rate × length."""
    rate, channels = sound.samplerate, sound.channels
    if not 0 < rate <= MAX_SAMPLING_RATE:
        raise AudioError(f"{name}: sampling rate {rate} Hz is not one a sound file has (1 Hz to {MAX_SAMPLING_RATE} Hz): the file is corrupt.")
    if not 0 < channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: {channels} channels, more than the {MAX_CHANNELS} this reads. Mix it down to mono or stereo first.")
    if max_seconds is not None and sound.frames / rate > max_seconds:
        raise _too_long(name, sound.frames / rate, max_seconds)
    limit = None if max_seconds is None else int(max_seconds * rate) + 1  # a header can under-state the length too
    resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
    pieces, frames = [], 0
    for block in sound.blocks(blocksize=max(DECODE_BLOCK_VALUES // channels, 1), dtype="float32", always_2d=True):
        frames += block.shape[0]
        if limit is not None and frames > limit:
            raise _too_long(name, frames / rate, max_seconds)
        mono = block.mean(axis=1) if channels > 1 else block[:, 0]
        pieces.append(resampler.resample_chunk(mono) if resampler else mono.copy())
    if resampler:
        pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def ffmpeg_binary() -> str | None:
    """The FFmpeg that imageio-ffmpeg (a requirement) bundles, else one on the PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # not installed, or a platform it ships no binary for
        return shutil.which("ffmpeg")


def _decode_with_ffmpeg(data: bytes | Path, name: str, max_seconds: float | None, cause: Exception) -> np.ndarray:
    """Formats libsndfile lacks (m4a, aac, wma, webm...), through FFmpeg, read up to the limit only."""
    ffmpeg = ffmpeg_binary()
    if ffmpeg is None:
        raise AudioError(
            f"{name}: not a readable audio file: it is corrupt, truncated or not audio, or a format that needs FFmpeg "
            "(read here without it: wav, flac, ogg, mp3). Export it again as one of these, or install imageio-ffmpeg "
            "(requirements.txt)."
        ) from cause
    # Local input only: a playlist posing as a sound must not make FFmpeg fetch anything over the network.
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-protocol_whitelist", "file,pipe", "-i", "pipe:0" if isinstance(data, bytes) else str(data),
           "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]
    limit = None if max_seconds is None else (int(max_seconds * SAMPLE_RATE) + 1) * 4
    with tempfile.TemporaryFile() as source:
        if isinstance(data, bytes):
            source.write(data)
            source.seek(0)
        process = subprocess.Popen(cmd, stdin=source if isinstance(data, bytes) else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = process.stdout.read(limit + 4 if limit else -1)
        over = limit is not None and len(out) > limit
        process.kill() if over else None
        process.wait()
    if over:
        raise _too_long(name, len(out) / 4 / SAMPLE_RATE, max_seconds)
    if process.returncode != 0 or not out:
        raise AudioError(f"{name}: not a readable audio file: it is corrupt, truncated or not audio at all. "
                         "Check the file, or export it again as wav, flac, ogg or mp3.") from cause
    return np.frombuffer(out[: len(out) // 4 * 4], dtype=np.float32).copy()


def _decode(data: bytes | Path, name: str, max_seconds: float | None) -> np.ndarray:
    """A file's bytes or path → mono float32 at 16 kHz, or an AudioError that says what the file is instead."""
    if isinstance(data, bytes):
        head = data[:512]
    else:
        with data.open("rb") as file:  # closed at once: a file left open leaks a handle per upload
            head = file.read(512)
    kind = _sniff(head)
    if kind is not None:
        raise AudioError(f"{name}: this is {kind}, not a sound. Give an audio file (wav, flac, ogg, mp3, ...).")
    try:
        with _quiet_decoders(), sf.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data) as sound:
            wave = _read_mono_16k(sound, name, max_seconds)
            shortfall = _header_shortfall(sound)
    except AudioError:
        raise
    except Exception as sf_error:  # libsndfile: wav, flac, ogg/opus, mp3; FFmpeg (imageio-ffmpeg's own) for the rest
        return _decode_with_ffmpeg(data, name, max_seconds, sf_error)
    if shortfall:
        claimed, held = shortfall
        if len(wave) < MIN_SECONDS * SAMPLE_RATE:
            raise AudioError(f"{name}: the file is truncated or its header is corrupt: it claims {claimed:,} bytes of sound "
                             f"and holds {held:,} ({len(wave) / SAMPLE_RATE:.2f} s). Export or download the sound again.")
        warnings.warn(f"{name}: the file is truncated or its header is wrong: it claims {claimed:,} bytes of sound and holds "
                      f"{held:,}; using the {len(wave) / SAMPLE_RATE:.2f} s it holds.", AudioWarning, stacklevel=3)
    return wave


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Mix down to mono float32: (samples, channels) as decoders give it, or (channels, samples) as torch gives it;
    integer PCM is scaled to [-1, 1]."""
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    wave = wave.astype(np.float32, copy=False)
    if wave.ndim == 2 and wave.size:
        wave = wave.mean(axis=1) if wave.shape[0] >= wave.shape[1] else wave.mean(axis=0)
    elif wave.ndim == 2:
        wave = np.zeros(0, dtype=np.float32)
    elif wave.ndim != 1:
        raise AudioError(f"audio must be 1-D or 2-D (samples, channels), got shape {wave.shape}")
    return np.ascontiguousarray(wave)


def resample(wave: np.ndarray, sampling_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 from `sampling_rate` to `target_rate` with soxr (the one resampler of the project)."""
    if sampling_rate <= 0:
        raise AudioError(f"sampling rate must be positive, got {sampling_rate}")
    if sampling_rate == target_rate or wave.size == 0:
        return wave
    return np.ascontiguousarray(soxr.resample(wave, sampling_rate, target_rate), dtype=np.float32)


def to_mono_16k(wave: np.ndarray, sampling_rate: int) -> np.ndarray:
    """Mix down to mono and resample to 16 kHz: what the encoder hears."""
    return resample(to_mono(wave), sampling_rate, SAMPLE_RATE)


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
    (`{"bytes": ..., "path": ...}`: the bytes if there are any, else the local path). Raises `AudioError` for a
    missing, empty, corrupt, non-audio, too short (under `MIN_SECONDS`), silent (unless `allow_silent`) or
    over-long (past `max_seconds`: `AudioTooLong`) sound, and warns (`AudioWarning`) when a file holds less than
    its header claims. A file is decoded block by block, so memory follows the 16 kHz mono sound, not the file.
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
        duration = (wave.shape[0] if wave.ndim == 1 else max(wave.shape)) / int(sampling_rate)
        if max_seconds is not None and duration > max_seconds:
            raise _too_long(name, duration, max_seconds)
        wave = to_mono_16k(wave, int(sampling_rate))
    elif isinstance(source, bytes):
        name = "audio bytes"
        if not source:
            raise AudioError("the audio is empty (0 bytes): record or upload a sound")
        wave = _decode(source, name, max_seconds)
    else:
        path = Path(source)
        _check_file(path)
        name = path.name
        wave = _decode(path, name, max_seconds)
    if wave.size == 0:
        raise AudioError(f"{name}: the sound has no samples. Record or export it again.")
    if wave.size < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError(f"{name}: only {1000 * wave.size / SAMPLE_RATE:.1f} ms of sound, too short to hear anything in "
                         f"(at least {1000 * MIN_SECONDS:.0f} ms). Record or upload a longer sound.")
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


ONSET_FLOOR_DB = -30.0  # quieter than this below the loudest 10 ms of a sound counts as the silence before it
ONSET_MARGIN_S = 0.1  # the window starts this long before the onset, so the first sound is heard whole


def sound_onset(wave: np.ndarray, floor_db: float = ONSET_FLOOR_DB, margin_s: float = ONSET_MARGIN_S) -> int:
    """The sample where the sound begins: the first 10 ms whose RMS is within `floor_db` of the loudest 10 ms,
    less `margin_s`. A recording from a microphone starts with the silence before the speaker speaks; a window
    placed at sample 0 would hear that silence and cut off the words at its end."""
    hop = SAMPLE_RATE // 100
    frames = wave[: wave.shape[0] // hop * hop].reshape(-1, hop)
    if frames.shape[0] == 0:
        return 0
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loud = np.nonzero(rms >= rms.max() * 10 ** (floor_db / 20))[0]
    return max(int(loud[0]) * hop - int(margin_s * SAMPLE_RATE), 0)


def sound_span(wave: np.ndarray) -> tuple[int, int]:
    """Where the sound begins and ends: `sound_onset` from the start and from the end (each with its margin)."""
    return sound_onset(wave), wave.shape[0] - sound_onset(np.ascontiguousarray(wave[::-1]))


def heard_sped_up(length: int, window: int) -> bool:
    """Whether a sound of `length` samples is heard whole, sped up to the window: longer than the window, at most
    SQUEEZE_MAX windows (the `first` policy for a file, live mode for the current sound)."""
    return window < length <= SQUEEZE_MAX * window


def squeeze(wave: np.ndarray, window: int) -> np.ndarray:
    """A sound sped up to exactly `window` samples at its pitch (`time_stretch`)."""
    return fit_length(time_stretch(wave, wave.shape[0] / window), window)


def squeezed_span(wave: np.ndarray, window: int) -> tuple[int, int] | None:
    """The part of a clip that `first` hears whole, sped up to the window (start and end sample), or None when the
    clip's sound fits the window as it is or lasts more than SQUEEZE_MAX windows."""
    start, end = sound_span(wave)
    return (start, end) if heard_sped_up(end - start, window) else None


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad to exactly `length` samples."""
    if len(wave) >= length:
        return wave[:length]
    return np.concatenate([wave, np.zeros(length - len(wave), dtype=wave.dtype)])


def time_stretch(wave: np.ndarray, factor: float, frame: int = 512, tolerance: int = 160) -> np.ndarray:
    """`factor` times faster (shorter) at the same pitch, by WSOLA: overlap-add of frames taken near where they
    belong, each at the offset (within `tolerance` samples) that best continues the frame before it."""
    if factor <= 0:
        raise ValueError(f"stretch factor must be positive, got {factor}")
    wave = np.asarray(wave, dtype=np.float32)
    out_len = int(round(len(wave) / factor))
    if abs(factor - 1.0) < 1e-6 or len(wave) < frame:
        return fit_length(wave.copy(), out_len)
    hop = frame // 2
    window = np.hanning(frame).astype(np.float32)
    # `tolerance` zeros to search into, then a frame of zeros so the clip's start gets full window overlap.
    x = np.concatenate([np.zeros(tolerance + frame, np.float32), wave,
                        np.zeros(3 * frame + 2 * tolerance, np.float32)])
    skip = int(round(frame / factor))  # output samples that stand for the leading frame of zeros
    n_frames = (out_len + skip) // hop + 2
    out = np.zeros(n_frames * hop + frame, np.float32)
    norm = np.zeros_like(out)
    previous = -1
    for k in range(n_frames):
        ideal = tolerance + int(round(k * hop * factor))
        if previous < 0:
            start = ideal
        else:
            template = x[previous + hop : previous + hop + frame]
            region = x[ideal - tolerance : ideal + tolerance + frame]
            if len(template) < frame or len(region) < frame:
                break
            start = ideal - tolerance + int(np.argmax(np.correlate(region, template, mode="valid")))
        piece = x[start : start + frame]
        if len(piece) < frame:
            break
        out[k * hop : k * hop + frame] += piece * window
        norm[k * hop : k * hop + frame] += window
        previous = start
    out = np.where(norm > 1e-3, out / np.maximum(norm, 1e-3), 0.0).astype(np.float32)
    return fit_length(out[skip:], out_len)


def window_starts(wave: np.ndarray, window: int, policy: str = "first") -> list[int]:
    """Start sample of each window `split_windows` cuts (0 for a clip no longer than the window).

    `first`: the first window with sound in it (from `sound_onset`, so leading silence is skipped); `loudest`:
    the window of highest energy (RMS); `all`: consecutive windows covering the clip, the last one ending at the
    clip's end (overlapping its neighbour) so no window is padded.
    """
    if policy not in WINDOW_POLICIES:
        raise ValueError(f"unknown window policy {policy!r}; use 'first', 'loudest' or 'all'")
    if wave.shape[0] <= window:
        return [0]
    if policy == "first":
        return [min(sound_onset(wave), wave.shape[0] - window)]
    if policy == "all":
        starts = list(range(0, wave.shape[0] - window + 1, window))
        if starts[-1] + window < wave.shape[0]:
            starts.append(wave.shape[0] - window)
        return starts
    hop = max(window // 4, 1)  # finer than `all` so a short loud event is caught whole
    candidates = list(range(0, wave.shape[0] - window + 1, hop)) + [wave.shape[0] - window]
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    return [max(candidates, key=lambda s: energy[s + window] - energy[s])]


def split_windows(wave: np.ndarray, window: int, policy: str = "first") -> list[tuple[int, np.ndarray]]:
    """The windows a long sound is heard through, as (start sample, samples): `first`, the `loudest` (highest
    RMS), or `all` in order (see `window_starts`). A clip shorter than the window is repeat-padded to it; with
    `first`, a sound a little longer than the window is heard whole, sped up to fit (`squeezed_span`)."""
    if wave.shape[0] <= window:
        return [(0, fit_to_window(wave, window))]
    span = squeezed_span(wave, window) if policy == "first" else None
    if span is not None:
        start, end = span
        return [(start, squeeze(wave[start:end], window))]
    return [(s, wave[s : s + window]) for s in window_starts(wave, window, policy)]
