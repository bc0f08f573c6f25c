"""world.microphone: the chain is reproducible and bounded, and each part does what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from world import microphone as M

SR = 16_000


def tone(freq: float = 220.0, seconds: float = 1.0, harmonics: int = 4) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1))).astype(np.float32)


def fake_speech(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic sound with a noisy part: enough like speech for these checks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return (0.3 * envelope * (voiced + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def peak_frequency(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spectrum)])


def band_energy(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(spectrum[(f >= low) & (f < high)].sum())


def test_microphone_is_reproducible_for_a_seed():
    speech, babble = fake_speech(), [fake_speech(seed=1), fake_speech(seed=2)]
    for seed in range(12):
        a, info_a = M.microphone_with_info(speech, np.random.default_rng(seed), babble=babble)
        b, info_b = M.microphone_with_info(speech, np.random.default_rng(seed), babble=babble)
        assert info_a == info_b and np.array_equal(a, b)
    assert not np.array_equal(M.microphone(speech, np.random.default_rng(0)), M.microphone(speech, np.random.default_rng(1)))


def test_microphone_stays_bounded_finite_and_within_the_expected_length():
    speech = fake_speech()
    n = len(speech)
    seen = set()
    for seed in range(40):
        out, info = M.microphone_with_info(speech, np.random.default_rng(seed), strength=1.0, babble=[fake_speech(seed=9)])
        seen |= set(info)
        assert out.dtype == np.float32 and out.ndim == 1
        assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
        shortest = math.floor(n / (1 + M.SPEED_MAX)) - 1
        longest = math.ceil(n / (1 - M.SPEED_MAX)) + 2 * int(M.SILENCE_MAX_S * SR) + 2
        assert shortest <= len(out) <= longest, (seed, len(out), info)
        expected = round(n / info.get("speed", 1.0)) + round(info.get("lead_s", 0) * SR) + round(info.get("trail_s", 0) * SR)
        assert abs(len(out) - expected) <= 2 + 1e-3 * n  # the speed factor is rounded to a whole sampling rate
    assert {"speed", "pitch_semitones", "lead_s", "rt60_s", "noise", "snr_db", "low_pass_hz", "codec"} <= seen


def test_strength_zero_leaves_the_clip_alone_and_small_strength_stays_mild():
    speech = fake_speech()
    assert np.array_equal(M.microphone(speech, np.random.default_rng(0), strength=0.0), speech)
    for seed in range(10):
        _, info = M.microphone_with_info(speech, np.random.default_rng(seed), strength=0.2)
        assert abs(info.get("speed", 1.0) - 1.0) <= 0.02 + 1e-9
        assert info.get("snr_db", 35.0) >= 29.0


def test_microphone_rejects_what_is_not_a_clip():
    with pytest.raises(ValueError):
        M.microphone(np.zeros((2, 100), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        M.microphone(np.array([0.0, np.nan], np.float32), np.random.default_rng(0))


def test_low_pass_and_high_pass_remove_energy_beyond_their_cut_offs():
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    low = M.band_limit(noise, low_pass_hz=2000.0)
    assert band_energy(low, 3000, 8000) < 0.01 * band_energy(noise, 3000, 8000)  # -20 dB at 1.5x the cut-off
    assert band_energy(low, 0, 1000) > 0.9 * band_energy(noise, 0, 1000)
    high = M.band_limit(noise, high_pass_hz=400.0)
    assert band_energy(high, 20, 260) < 0.01 * band_energy(noise, 20, 260)
    assert band_energy(high, 1000, 8000) > 0.9 * band_energy(noise, 1000, 8000)
    assert len(low) == len(noise) and low.dtype == np.float32


@pytest.mark.parametrize("kind", M.NOISE_KINDS)
def test_noise_is_added_at_the_snr_asked_for(kind):
    rng = np.random.default_rng(1)
    speech = fake_speech()
    for snr in (0.0, 10.0, 25.0):
        noise = M.make_noise(kind, len(speech), rng, babble=[fake_speech(seed=3), fake_speech(seed=4)])
        noisy = M.add_noise(speech, noise, snr)
        added = noisy - speech
        measured = 10 * math.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
        assert abs(measured - snr) < 1.0, (kind, snr, measured)


def test_noise_colours_tilt_the_spectrum():
    rng = np.random.default_rng(0)
    tilt = {k: band_energy(M.make_noise(k, SR, rng), 100, 500) / band_energy(M.make_noise(k, SR, rng), 4000, 8000)
            for k in ("white", "pink", "brown")}  # per-Hz: white 1/10, pink ~ 1, brown far more
    assert tilt["white"] < 0.2 < tilt["pink"] < 10 < tilt["brown"]
    hum = M.make_noise("hum", SR, rng)
    mains = 50.0 if peak_frequency(hum) % 50 == 0 else 60.0
    assert peak_frequency(hum) % mains == 0 and peak_frequency(hum) <= 7 * mains  # the mains or a harmonic
    harmonics = sum(band_energy(hum, mains * k - 2, mains * k + 2) for k in range(1, 8))
    assert harmonics > 0.9 * band_energy(hum, 0, 8000)


def test_speed_changes_length_and_pitch_together():
    clip = tone(220.0)
    fast = M.speed(clip, 1.1)
    assert abs(len(fast) - len(clip) / 1.1) <= 1
    assert abs(peak_frequency(fast) / 220.0 - 1.1) < 0.02


def test_pitch_shift_keeps_the_length_and_moves_the_pitch():
    clip = tone(220.0)
    for semitones in (-3.0, 2.0, 3.0):
        shifted = M.pitch_shift(clip, semitones)
        assert len(shifted) == len(clip)
        assert abs(peak_frequency(shifted) / (220.0 * 2 ** (semitones / 12)) - 1) < 0.02


def test_time_stretch_keeps_the_pitch_and_the_level():
    clip = tone(220.0, seconds=2.0)
    for factor in (0.8, 1.25):
        stretched = M.time_stretch(clip, factor)
        assert len(stretched) == round(len(clip) / factor)
        assert abs(peak_frequency(stretched) - 220.0) < 3.0
        inner = stretched[1000:-1000]
        assert abs(np.sqrt(np.mean(inner**2)) / np.sqrt(np.mean(clip**2)) - 1) < 0.1


def test_room_reverberation_decays_at_its_rt60():
    rng = np.random.default_rng(0)
    rt60 = 0.5
    response = M.impulse_response(rt60, rng)
    assert len(response) == int(rt60 * SR) and response[0] == 1.0
    tail = response[1:] ** 2
    early = tail[: len(tail) // 10].mean()
    late = tail[-len(tail) // 10 :].mean()
    assert -70 < 10 * math.log10(late / early) < -45  # -60 dB at rt60, measured over windows
    click = np.zeros(SR, np.float32)
    click[100] = 1.0
    wet = M.room(click, rt60, 0.5, rng)
    assert len(wet) == len(click)
    assert np.sum(wet[1000:8000] ** 2) > 0.01 * np.sum(wet**2)  # energy rings on after the click
    assert np.sum(wet[:100] ** 2) < 1e-9 * np.sum(wet**2)  # and never comes before it


def test_silence_is_padded_with_a_low_noise_floor():
    speech = fake_speech()
    padded = M.pad_silence(speech, 0.25, 0.5, -50.0, np.random.default_rng(0))
    assert len(padded) == len(speech) + 4000 + 8000
    assert np.array_equal(padded[4000 : 4000 + len(speech)], speech)
    floor = 10 * math.log10(np.mean(padded[:4000] ** 2) / np.mean(speech**2))
    assert abs(floor + 50.0) < 1.5


def test_gain_and_soft_clipping():
    clip = fake_speech()
    assert abs(20 * math.log10(np.abs(M.gain(clip, -6.0)).max()) + 6.0) < 1e-3
    clipped = M.soft_clip(clip, 4.0)
    assert np.isclose(np.abs(clipped).max(), np.abs(clip).max(), rtol=1e-4)

    def crest(w):
        return np.abs(w).max() / np.sqrt(np.mean(w**2))
    assert crest(clipped) < 0.8 * crest(clip)


@pytest.mark.parametrize("kind", M.CODECS)
def test_codec_round_trip_keeps_length_and_the_sound(kind):
    if not M.codec_available(kind):
        pytest.skip(f"this libsndfile cannot write {kind}")
    clip = tone(300.0, seconds=1.0)
    out = M.codec(clip, kind, quality=0.5)
    assert len(out) == len(clip) and out.dtype == np.float32
    assert not np.array_equal(out, clip)
    assert np.corrcoef(out, clip)[0, 1] > 0.9  # aligned: no codec delay left in
    assert np.array_equal(out, M.codec(clip, kind, quality=0.5))  # deterministic
    if kind == "mulaw":  # 8 kHz telephone: nothing above 4 kHz survives
        noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
        assert band_energy(M.codec(noise, kind), 4200, 8000) < 0.01 * band_energy(noise, 4200, 8000)


def test_trim_silence_cuts_the_synthesizers_silence_but_keeps_a_margin():
    speech = fake_speech(0.5)
    clip = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(8000, np.float32)])
    trimmed = M.trim_silence(clip)
    assert len(speech) * 0.9 < len(trimmed) <= len(speech) + 2 * int(0.05 * SR)
    silent = np.zeros(100, np.float32)
    assert np.array_equal(M.trim_silence(silent), silent)


@pytest.mark.parametrize("kind", [k for k in ("ogg", "opus", "mp3") if M.codec_available(k)])
def test_codec_takes_the_worst_quality(kind):
    """quality 0.0 is drawn now and then (rounded to 2 decimals): libsndfile refuses MP3 at compression level 1.0."""
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    assert len(M.codec(wave, kind, 0.0)) == len(wave)
