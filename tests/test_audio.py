import os

import numpy as np
import pytest
import soundfile as sf
import torch

from hearing.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_tokens_for_samples,
    fit_to_window,
    load_audio,
    ONSET_MARGIN_S,
    SQUEEZE_MAX,
    sound_onset,
    split_windows,
    squeezed_span,
    window_samples_for_tokens,
)


def _tone(seconds, rate, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
@pytest.mark.parametrize(("rate", "channels"), [(44_100, 2), (8_000, 1), (48_000, 6)])
def test_any_common_format_rate_and_channels_become_mono_16k(tmp_path, fmt, subtype, rate, channels):
    path = tmp_path / f"clip.{fmt.lower()}"
    channels = min(channels, 2) if fmt == "MP3" else channels  # MPEG audio holds at most two channels
    sf.write(path, _tone(1.0, rate, channels=channels), rate, format=fmt, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE  # codecs pad a few frames
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)[spectrum.argmax()] - 440) < 5  # still a 440 Hz tone


def test_bytes_arrays_and_gradio_tuples(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(0.5, 22_050), 22_050)
    from_path = load_audio(path)
    np.testing.assert_allclose(load_audio(path.read_bytes()), from_path, atol=1e-6)
    pcm = (_tone(0.5, 16_000) * 32767).astype(np.int16)  # what a Gradio microphone gives
    np.testing.assert_allclose(load_audio((16_000, pcm)), pcm / 32767, atol=1e-4)
    assert load_audio(torch.from_numpy(_tone(0.5, 32_000)), sampling_rate=32_000).shape == (8_000,)
    with pytest.raises(AudioError, match="sampling_rate"):
        load_audio(np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("this is a text file, not a sound"), "this is a text file, not a sound"),
        (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(40)), "not a readable audio file|cannot decode"),
        (lambda p: sf.write(p, np.zeros(16_000, dtype=np.float32), 16_000), "silent"),
        (lambda p: sf.write(p, np.zeros((0,), dtype=np.float32), 16_000), "empty|no samples|not a readable"),
        (lambda p: p.mkdir(), "a folder, not a sound file"),
        (lambda p: os.symlink(p, p), "a symbolic link that points back to itself"),
        (lambda p: os.symlink(p.parent / "gone.wav", p), "a symbolic link to a file that does not exist"),
    ],
    ids=["missing", "empty", "text", "corrupt-header", "silent", "zero-samples", "folder", "symlink-loop", "dangling-symlink"],
)
def test_bad_files_raise_a_clear_audio_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        load_audio(path)


def test_too_long_is_refused_before_decoding_and_the_limit_is_a_setting(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, _tone(12.0, 8_000), 8_000)
    with pytest.raises(AudioError, match="over the 10 s limit"):
        load_audio(path, max_seconds=10)
    assert load_audio(path, max_seconds=None).shape == (12 * SAMPLE_RATE,)
    assert load_audio(np.zeros(1_600, dtype=np.float32), 16_000, allow_silent=True).shape == (1_600,)


def test_window_formula_matches_design_numbers():
    assert window_samples_for_tokens(76) == 96_400
    assert audio_tokens_for_samples(97_679) == 76 and audio_tokens_for_samples(97_680) == 77
    assert audio_tokens_for_samples(98_959) == 77 and audio_tokens_for_samples(98_960) == 78
    assert window_samples_for_tokens(47) == pytest.approx(3.775 * SAMPLE_RATE, abs=1280)


@pytest.mark.parametrize("num_samples", [4_800, 20_160, 96_399, 96_400, 97_679, 97_680])
def test_window_formula_matches_the_real_model_output(audio_encoder, feature_extractor, num_samples):
    """The real feature extractor + adapter convolutions are the ground truth, not a second formula."""
    features = feature_extractor(np.ones(num_samples, dtype=np.float32), sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.no_grad():
        hidden = audio_encoder.audio_model(features["input_features"]).last_hidden_state
    assert hidden.shape[1] == audio_tokens_for_samples(num_samples)


def test_fit_to_window_crops_and_repeat_pads():
    wave = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_to_window(wave, 4, "center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(fit_to_window(wave, 4, "start"), [0, 1, 2, 3])
    np.testing.assert_array_equal(fit_to_window(wave[:3], 7), [0, 1, 2, 0, 1, 2, 0])
    crops = {tuple(fit_to_window(wave, 4, "random", np.random.default_rng(s))) for s in range(20)}
    assert len(crops) > 1 and all(len(c) == 4 for c in crops)


def test_window_policies():
    window = 100
    wave = np.full(350, 0.01, dtype=np.float32)
    wave[220:300] = 0.9  # a loud event in the third window
    (_, first), = split_windows(wave, window, "first")
    np.testing.assert_array_equal(first, wave[:100])  # sound from the start: the first window starts there
    everything = [cut for _, cut in split_windows(wave, window, "all")]
    assert [len(w) for w in everything] == [100] * 4
    np.testing.assert_array_equal(everything[-1], wave[250:])  # the last window ends at the clip's end
    (_, loudest), = split_windows(wave, window, "loudest")
    assert (loudest > 0.5).sum() == 80  # the whole event fits inside the chosen window
    with pytest.raises(ValueError, match="window policy"):
        split_windows(wave, window, "middle")


def test_first_window_skips_the_silence_before_the_sound():
    # A microphone recording: 1.5 s of quiet room noise, then 2 s of speech-loud sound, then quiet again.
    rng = np.random.default_rng(0)
    wave = (0.002 * rng.standard_normal(16_000 * 5)).astype(np.float32)
    wave[24_000:56_000] += 0.5 * np.sin(np.arange(32_000) * 0.2).astype(np.float32)
    window = 48_000
    (start, first), = split_windows(wave, window, "first")
    assert start == 24_000 - int(ONSET_MARGIN_S * 16_000)
    assert np.abs(first[-window + 56_000 - start:]).max() < 0.05  # the whole sound is inside, quiet after it
    np.testing.assert_array_equal(first, wave[start : start + window])
    late = wave.copy()
    late[24_000:56_000] = late[:32_000]  # nothing loud until a sound in the last 0.5 s: the window ends at the clip's end
    late[-8_000:] += 0.5
    (start, _), = split_windows(late, window, "first")
    assert start == len(late) - window
    assert sound_onset(np.zeros(16_000, dtype=np.float32)) == 0


def test_datasets_audio_records_read_bytes_then_path(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, _tone(0.5, 16_000), 16_000)
    from_path = load_audio({"bytes": None, "path": str(path)})
    np.testing.assert_allclose(load_audio({"bytes": path.read_bytes(), "path": "elsewhere.flac"}), from_path)
    with pytest.raises(AudioError, match="neither bytes nor a path"):
        load_audio({"bytes": None, "path": None})


def test_formats_libsndfile_lacks_decode_with_the_bundled_ffmpeg(tmp_path, monkeypatch):
    """An m4a (AAC) from a phone: decoded by the FFmpeg that imageio-ffmpeg (a requirement) bundles, with no system
    FFmpeg on the PATH."""
    import subprocess

    import imageio_ffmpeg

    from hearing.audio import SAMPLE_RATE, load_audio

    sf.write(tmp_path / "voice.wav", _tone(2.0, 44_100), 44_100)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(tmp_path / "voice.wav"), "-c:a", "aac",
                    str(tmp_path / "voice.m4a")], check=True, timeout=60)
    with pytest.raises(sf.LibsndfileError):
        sf.info(tmp_path / "voice.m4a")  # what makes the file need FFmpeg
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    wave = load_audio(tmp_path / "voice.m4a")
    assert abs(len(wave) / SAMPLE_RATE - 2.0) < 0.1 and np.abs(wave).max() > 0.1


def _peak_hz(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    hz = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    band = (hz >= low) & (hz <= high)
    return float(hz[band][np.argmax(spectrum[band])])


def _band_energy(wave: np.ndarray, centre: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    hz = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return float(spectrum[(hz > centre * 0.9) & (hz < centre * 1.1)].sum() / spectrum.sum())


def test_first_hears_a_sound_a_little_longer_than_the_window_whole_sped_up_at_its_pitch():
    # A request of 3.7 s in a 3 s window: a low tone first, a high one last; quiet room noise around them
    window = 48_000
    rng = np.random.default_rng(0)
    wave = (0.002 * rng.standard_normal(16_000 * 5)).astype(np.float32)
    t = np.arange(16_000) / SAMPLE_RATE
    wave[8_000:24_000] += 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    wave[56_000:64_000] += 0.5 * np.sin(2 * np.pi * 1000 * t[:8_000]).astype(np.float32)
    start, end = squeezed_span(wave, window)
    assert start == 8_000 - int(ONSET_MARGIN_S * SAMPLE_RATE) and end == 64_000 + int(ONSET_MARGIN_S * SAMPLE_RATE)
    (first_start, heard), = split_windows(wave, window, "first")
    assert first_start == start and heard.shape == (window,)
    assert _band_energy(heard[: window // 3], 440) > 0.5 and _band_energy(heard[-window // 6 :], 1000) > 0.5  # both ends kept
    assert abs(_peak_hz(heard[: window // 3], 300, 2000) - 440) < 5 and abs(_peak_hz(heard[-window // 6 :], 300, 2000) - 1000) < 5
    (loudest_start, loudest), = split_windows(wave, window, "loudest")  # the other policies still cut
    np.testing.assert_array_equal(loudest, wave[loudest_start : loudest_start + window])


def test_only_a_sound_somewhat_longer_than_the_window_is_sped_up():
    window = 48_000
    fits = np.zeros(16_000 * 4, dtype=np.float32)
    fits[16_000:40_000] = 0.5  # 1.5 s of sound in a 4 s clip: the window holds it as it is
    assert squeezed_span(fits, window) is None
    (start, heard), = split_windows(fits, window, "first")
    np.testing.assert_array_equal(heard, fits[start : start + window])
    too_long = np.full(int(window * (SQUEEZE_MAX + 0.1)), 0.5, dtype=np.float32)  # longer than SQUEEZE_MAX windows: cut
    assert squeezed_span(too_long, window) is None
    (_, heard), = split_windows(too_long, window, "first")
    np.testing.assert_array_equal(heard, too_long[:window])
