"""Make a clean synthetic clip sound like a microphone recording.

A synthesizer's clip is clean, dry, full-band and starts on its first phoneme. A person's recording has a
room, a background, a microphone's band, a level, sometimes clipping and a lossy codec, and silence around
the speech. `microphone(wave, rng)` applies a random chain of these, in the order sound meets them:

    speaker (speed, pitch) -> silence around the words -> room (reverberation) -> background noise
    -> microphone / channel (band limits) -> level (gain, soft clipping) -> codec (ogg, opus, mp3, mu-law)

Every random choice comes from the numpy `Generator` passed in, so a seed gives the same clip again. Each part
is also a small function of its own (`speed`, `pitch_shift`, `pad_silence`, `room`, `add_noise`,
`band_limit`, `gain`, `soft_clip`, `codec`) taking its parameters explicitly. Only numpy, soxr (resampling,
through `hearing.audio.to_mono_16k`) and soundfile (codecs, in memory) are used. Clips are mono float32 at 16 kHz.

The time-stretch (WSOLA, `hearing.audio.time_stretch`, which the pipeline uses too) and pitch shift are the project's own because no library measured as good
(`bench/stretch_pitch.py`, one thread): librosa 0.11 is 2.5-3.6x slower and its pitch round trip 3-4 dB further from
the original (8.6-10.6 dB log-spectral distance against 4.4-7.5); pedalboard 0.9 is 6-14x slower and its PitchShift
5.7-25 cents off (ours 0.2 at most); its offline path is exact but 15-40x slower. Lengths are exact in all of them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import soundfile as sf

from hearing.audio import SAMPLE_RATE, fit_length, time_stretch, to_mono_16k

SPEED_MAX = 0.10  # speed perturbation: a factor within 1 +- this (times strength)
PITCH_MAX_SEMITONES = 3.0
SILENCE_MAX_S = 0.6  # leading and trailing silence, each at most this long (times strength)
SILENCE_FLOOR_DB = (-70.0, -45.0)  # the noise floor in that silence, relative to the speech RMS
RT60_RANGE_S = (0.1, 0.9)
WET_RANGE = (0.1, 0.7)
SNR_RANGE_DB = (5.0, 35.0)  # at strength 1; weaker strength raises the lower end towards 35 dB
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")
HIGH_PASS_RANGE_HZ = (50.0, 300.0)
LOW_PASS_RANGE_HZ = (3000.0, 7800.0)
TELEPHONE_BAND_HZ = (300.0, 3400.0)
PEAK_RANGE_DB = (-24.0, -0.5)
CODECS = ("ogg", "opus", "mp3", "mulaw")
# How often each part is applied at strength 1 (probabilities scale with strength, up to 1).
PROBABILITY = {"speed": 0.5, "pitch": 0.3, "silence": 0.9, "room": 0.5, "noise": 0.8, "high_pass": 0.6,
               "low_pass": 0.5, "telephone": 0.1, "soft_clip": 0.08, "codec": 0.3}


def trim_silence(wave: np.ndarray, threshold: float = 0.01, margin_s: float = 0.05) -> np.ndarray:
    """Cut a synthesizer's leading and trailing silence (keeping a short margin) so the window holds speech."""
    loud = np.nonzero(np.abs(wave) > threshold * np.abs(wave).max())[0]
    if len(loud) == 0:
        return wave
    margin = int(margin_s * SAMPLE_RATE)
    return wave[max(loud[0] - margin, 0) : loud[-1] + margin]


def _power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64))) if wave.size else 0.0


# --- the speaker -------------------------------------------------------------------------------------------

def speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (shorter, higher), as a tape or Kaldi's speed perturbation does."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    if abs(factor - 1.0) < 1e-6:
        return wave.astype(np.float32, copy=True)
    return to_mono_16k(wave, int(round(SAMPLE_RATE * factor)))


def pitch_shift(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Raise (or lower) the pitch by `semitones`, keeping the length and timing."""
    if abs(semitones) < 1e-6:
        return wave.astype(np.float32, copy=True)
    factor = 2.0 ** (semitones / 12.0)
    return fit_length(speed(time_stretch(wave, 1.0 / factor), factor), len(wave))


# --- silence, room, background -----------------------------------------------------------------------------

def pad_silence(wave: np.ndarray, lead_s: float, trail_s: float, floor_db: float, rng: np.random.Generator) -> np.ndarray:
    """Put `lead_s` and `trail_s` seconds of near-silence (white noise `floor_db` below the speech RMS) around."""
    lead, trail = int(round(lead_s * SAMPLE_RATE)), int(round(trail_s * SAMPLE_RATE))
    level = math.sqrt(_power(wave)) * 10 ** (floor_db / 20)
    return np.concatenate([
        (rng.standard_normal(lead) * level).astype(np.float32), wave.astype(np.float32),
        (rng.standard_normal(trail) * level).astype(np.float32),
    ])


def impulse_response(rt60_s: float, rng: np.random.Generator, predelay_s: float = 0.005) -> np.ndarray:
    """A synthetic room: a direct path, then exponentially decaying noise (-60 dB at `rt60_s`), high
    frequencies dying faster as walls absorb them."""
    length = max(int(rt60_s * SAMPLE_RATE), 2)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    late = 1.0 - np.exp(-3.0 * t / rt60_s)  # blend towards a low-passed tail as time goes on
    tail = (1.0 - late) * tail + late * np.convolve(tail, np.ones(4) / 4, mode="same")
    delay = min(int(predelay_s * SAMPLE_RATE), length - 1)
    tail[: delay + 1] = 0.0
    tail /= math.sqrt(float(np.sum(tail**2))) + 1e-12
    response = tail
    response[0] = 1.0
    return response.astype(np.float32)


def _convolve(wave: np.ndarray, response: np.ndarray) -> np.ndarray:
    size = len(wave) + len(response) - 1
    n = 1 << (size - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(wave, n) * np.fft.rfft(response, n), n)[: len(wave)].astype(np.float32)


def room(wave: np.ndarray, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Reverberation of a room with reverberation time `rt60_s`, mixed `wet` (0 dry .. 1 all reverberant)."""
    reverberant = _convolve(wave, impulse_response(rt60_s, rng))
    reverberant *= math.sqrt(_power(wave) / (_power(reverberant) + 1e-20))
    return ((1 - wet) * wave + wet * reverberant).astype(np.float32)


def _coloured(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), above 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    f = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum *= np.maximum(f, 20.0) ** (-exponent / 2)
    spectrum[f < 20.0] = 0.0
    return np.fft.irfft(spectrum, length)


def make_noise(kind: str, length: int, rng: np.random.Generator, babble: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Background noise: white, pink, brown, mains hum (50 or 60 Hz with harmonics), or babble of other speech."""
    if kind == "white":
        noise = rng.standard_normal(length)
    elif kind == "pink":
        noise = _coloured(length, 1.0, rng)
    elif kind == "brown":
        noise = _coloured(length, 2.0, rng)
    elif kind == "hum":
        t = np.arange(length) / SAMPLE_RATE
        base = 50.0 if rng.random() < 0.5 else 60.0
        noise = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 8))
        noise = noise + 0.05 * rng.standard_normal(length)
    elif kind == "babble":
        if not babble:
            raise ValueError("babble noise needs other speech clips (babble=[...])")
        noise = np.zeros(length)
        for _ in range(int(rng.integers(3, 7))):
            clip = np.asarray(babble[int(rng.integers(len(babble)))], dtype=np.float64)
            if clip.size == 0:
                continue
            clip = np.tile(clip, math.ceil(length / len(clip)) + 1)
            start = int(rng.integers(0, len(clip) - length + 1))
            piece = clip[start : start + length]
            noise += piece / (math.sqrt(_power(piece)) + 1e-9) * rng.uniform(0.3, 1.0)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; use one of {NOISE_KINDS}")
    return np.asarray(noise, dtype=np.float32)


def music(length: int, rng: np.random.Generator) -> np.ndarray:
    """A stretch of synthetic music: chords of a random key changing on the beat, a melody over them and a soft
    drum, at a random tempo: the kind of background a person speaking with music playing has behind the voice."""
    t = np.arange(length) / SAMPLE_RATE
    beat = 60.0 / rng.uniform(70, 150)
    root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    out = np.zeros(length)
    for k, start in enumerate(np.arange(0, t[-1] + beat, 2 * beat) if length else []):
        span = (t >= start) & (t < start + 2 * beat)
        degree = int(rng.integers(0, 7))
        for step in (0, 2, 4):  # a triad on the scale
            f = root * 2 ** (scale[(degree + step) % 8] / 12)
            out[span] += sum(np.sin(2 * np.pi * f * h * t[span]) / h for h in (1, 2, 3)) * np.exp(-(t[span] - start) / (1.5 * beat))
        note = root * 4 * 2 ** (scale[int(rng.integers(0, 8))] / 12)
        half = span & (t < start + beat)
        out[half] += 0.8 * np.sin(2 * np.pi * note * t[half]) * np.exp(-(t[half] - start) / (0.6 * beat))
        hit = (t >= start) & (t < start + 0.05)
        out[hit] += 0.5 * rng.standard_normal(int(hit.sum())) * np.exp(-(t[hit] - start) / 0.01)
    return (out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float, signal_power: float | None = None) -> np.ndarray:
    """`wave` plus `noise` scaled so that signal power / noise power is `snr_db` (the signal's power is
    `signal_power` if given, e.g. that of the speech alone before silence was put around it)."""
    if len(noise) != len(wave):
        raise ValueError(f"noise has {len(noise)} samples, the clip {len(wave)}")
    power = _power(wave) if signal_power is None else signal_power
    scale = math.sqrt(power / (_power(noise) + 1e-20) / 10 ** (snr_db / 10))
    return (wave + noise * scale).astype(np.float32)


# --- microphone, level, codec ------------------------------------------------------------------------------

def band_limit(wave: np.ndarray, high_pass_hz: float | None = None, low_pass_hz: float | None = None, order: int = 6) -> np.ndarray:
    """Zero-phase Butterworth-shaped high-pass and/or low-pass (cut-offs at -3 dB), applied in the frequency domain."""
    if high_pass_hz is None and low_pass_hz is None:
        return wave.astype(np.float32, copy=True)
    pad = 2048  # against wrap-around of the filter's (short) response
    n = len(wave) + 2 * pad
    spectrum = np.fft.rfft(np.concatenate([np.zeros(pad), wave, np.zeros(pad)]))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    gain = np.ones_like(f)
    if low_pass_hz is not None:
        gain /= np.sqrt(1 + (f / low_pass_hz) ** (2 * order))
    if high_pass_hz is not None:
        gain /= np.sqrt(1 + (high_pass_hz / np.maximum(f, 1e-3)) ** (2 * order))
    return np.fft.irfft(spectrum * gain, n)[pad : pad + len(wave)].astype(np.float32)


def gain(wave: np.ndarray, peak_db: float) -> np.ndarray:
    """Scale so the loudest sample is at `peak_db` dBFS."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0:
        return wave.astype(np.float32, copy=True)
    return (wave * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def soft_clip(wave: np.ndarray, drive: float) -> np.ndarray:
    """An overdriven input stage: tanh saturation with `drive` (>1 squashes the peaks), peak kept."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0 or drive <= 0:
        return wave.astype(np.float32, copy=True)
    return (np.tanh(drive * wave / peak) / math.tanh(drive) * peak).astype(np.float32)


def codec(wave: np.ndarray, kind: str, quality: float = 0.5) -> np.ndarray:
    """Encode and decode in memory: `ogg` (Vorbis), `opus`, `mp3` or `mulaw` (8 kHz telephone); `quality` 0 (worst) .. 1.

    Same length out as in.
    """
    formats = {"ogg": ("OGG", "VORBIS", SAMPLE_RATE), "opus": ("OGG", "OPUS", SAMPLE_RATE),
               "mp3": ("MP3", "MPEG_LAYER_III", SAMPLE_RATE), "mulaw": ("WAV", "ULAW", 8000)}
    if kind not in formats:
        raise ValueError(f"unknown codec {kind!r}; use one of {CODECS}")
    fmt, subtype, rate = formats[kind]
    if not codec_available(kind):
        raise RuntimeError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}/{subtype}")
    data = np.clip(wave, -1.0, 1.0).astype(np.float32)
    if rate != SAMPLE_RATE:
        data = _resample(data, SAMPLE_RATE, rate)
    buffer = io.BytesIO()
    # libsndfile refuses MP3 at compression level 1.0 exactly: the worst quality asked for is 0.99
    options = {} if kind == "mulaw" else {"compression_level": float(np.clip(1.0 - quality, 0.0, 0.99))}
    sf.write(buffer, data, rate, format=fmt, subtype=subtype, **options)
    buffer.seek(0)
    decoded, decoded_rate = sf.read(buffer, dtype="float32", always_2d=False)
    return fit_length(to_mono_16k(decoded, decoded_rate), len(wave))


def _resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample through `to_mono_16k` (soxr): treat the clip as recorded at the rate that maps onto 16 kHz."""
    return to_mono_16k(wave, int(round(SAMPLE_RATE * rate_in / rate_out)))


def codec_available(kind: str) -> bool:
    formats = {"ogg": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"), "mulaw": ("WAV", "ULAW")}
    fmt, subtype = formats[kind]
    return fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt)


# --- the whole chain ---------------------------------------------------------------------------------------

def microphone_with_info(wave: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                         babble: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, dict]:
    """`microphone`, also returning what was done (for a manifest)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"microphone() takes a non-empty mono clip, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("microphone() got NaN or infinite samples")
    info: dict = {}
    if strength <= 0:
        return wave.copy(), info
    s = float(strength)

    def happens(part: str) -> bool:
        return bool(rng.random() < min(PROBABILITY[part] * s, 1.0))

    if happens("speed"):
        info["speed"] = round(float(rng.uniform(1 - SPEED_MAX * s, 1 + SPEED_MAX * s)), 4)
        wave = speed(wave, info["speed"])
    if happens("pitch"):
        info["pitch_semitones"] = round(float(rng.uniform(-PITCH_MAX_SEMITONES, PITCH_MAX_SEMITONES) * min(s, 1.0)), 3)
        wave = pitch_shift(wave, info["pitch_semitones"])
    speech_power = _power(wave)
    if happens("silence"):
        lead, trail = (float(rng.uniform(0, SILENCE_MAX_S * min(s, 1.0))) for _ in range(2))
        floor = float(rng.uniform(*SILENCE_FLOOR_DB))
        info.update(lead_s=round(lead, 3), trail_s=round(trail, 3), floor_db=round(floor, 1))
        wave = pad_silence(wave, lead, trail, floor, rng)
    if happens("room"):
        info["rt60_s"] = round(float(rng.uniform(*RT60_RANGE_S)), 3)
        info["wet"] = round(float(rng.uniform(*WET_RANGE) * min(s, 1.0)), 3)
        wave = room(wave, info["rt60_s"], info["wet"], rng)
    if happens("noise"):
        kinds = [k for k in NOISE_KINDS if k != "babble" or babble]
        info["noise"] = kinds[int(rng.integers(len(kinds)))]
        low = SNR_RANGE_DB[1] - (SNR_RANGE_DB[1] - SNR_RANGE_DB[0]) * min(s, 1.0)
        info["snr_db"] = round(float(rng.uniform(low, SNR_RANGE_DB[1])), 2)
        noise = make_noise(info["noise"], len(wave), rng, babble)
        wave = add_noise(wave, noise, info["snr_db"], signal_power=speech_power)
    if happens("telephone"):
        info["high_pass_hz"], info["low_pass_hz"] = TELEPHONE_BAND_HZ
    else:
        if happens("high_pass"):
            info["high_pass_hz"] = round(float(rng.uniform(*HIGH_PASS_RANGE_HZ)), 1)
        if happens("low_pass"):
            info["low_pass_hz"] = round(float(rng.uniform(*LOW_PASS_RANGE_HZ)), 1)
    if "high_pass_hz" in info or "low_pass_hz" in info:
        wave = band_limit(wave, info.get("high_pass_hz"), info.get("low_pass_hz"))
    info["peak_db"] = round(float(rng.uniform(*PEAK_RANGE_DB)), 2)
    wave = gain(wave, info["peak_db"])
    if happens("soft_clip"):
        info["drive"] = round(float(rng.uniform(1.5, 5.0)), 2)
        wave = soft_clip(wave, info["drive"])
    if happens("codec"):
        kinds = [k for k in CODECS if codec_available(k)]
        if kinds:
            info["codec"] = kinds[int(rng.integers(len(kinds)))]
            info["codec_quality"] = round(float(rng.uniform(0.0, 1.0)), 2)
            wave = codec(wave, info["codec"], info["codec_quality"])
    wave = np.clip(np.nan_to_num(wave), -1.0, 1.0).astype(np.float32)
    return wave, info


def microphone(wave: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
               babble: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A clean 16 kHz clip as a microphone might have recorded it: random speed and pitch, silence around it,
    a room, background noise (babble from `babble`, other clean clips, if given), band limits, level, soft
    clipping and a lossy codec, each drawn from `rng`. `strength` 0 leaves the clip as it is; 1 is the full
    range; the length grows by at most 2 * SILENCE_MAX_S seconds and changes by the speed factor."""
    return microphone_with_info(wave, rng, strength, babble)[0]
