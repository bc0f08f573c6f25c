"""Hostile sound files: each is refused with one line naming the problem and the fix, or read with memory that
follows what the model hears (the 16 kHz mono sound), never what the file claims. The files are made here."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hearing.audio import MIN_SECONDS, SAMPLE_RATE, AudioError, AudioTooLong, AudioWarning, load_audio
from tests.conftest import tone, wav_with_data_size

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def test_a_picture_renamed_to_mp3_is_called_a_picture(tmp_path):
    path = tmp_path / "holiday.mp3"
    path.write_bytes(PNG)
    with pytest.raises(AudioError, match=r"holiday.mp3: this is a PNG image, not a sound\. Give an audio file"):
        load_audio(path)


def test_random_bytes_are_called_corrupt_or_not_audio_and_decoders_stay_quiet(tmp_path):
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    script = f"from hearing.audio import load_audio, AudioError\ntry:\n    load_audio({str(path)!r})\nexcept AudioError as e:\n    print(e)\n"
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "not a readable audio file: it is corrupt, truncated or not audio" in run.stdout
    assert "MPEG" not in run.stderr and "mpg123" not in run.stderr, run.stderr  # libsndfile's mpg123 chatter is held back


def test_a_sound_too_short_to_hear_is_refused_not_tiled_into_a_tone(tmp_path):
    path = tmp_path / "click.wav"
    sf.write(path, np.array([0.5], dtype=np.float32), SAMPLE_RATE)  # one sample: 62.5 µs
    with pytest.raises(AudioError, match=r"only 0\.1 ms of sound, too short"):
        load_audio(path)
    sf.write(path, tone(MIN_SECONDS + 0.01), SAMPLE_RATE)  # just over the minimum is fine
    assert load_audio(path).shape[0] > MIN_SECONDS * SAMPLE_RATE


def test_a_header_that_claims_gigabytes_over_a_few_bytes_is_refused(tmp_path):
    path = wav_with_data_size(tmp_path / "liar.wav", 0.03, 0xFFFFFFF0)  # 4 GB claimed, ~1000 bytes held
    with pytest.raises(AudioError, match="truncated or its header is corrupt: it claims 4,294,967,280 bytes"):
        load_audio(path)


def test_a_truncated_file_is_read_with_a_warning(tmp_path):
    path = wav_with_data_size(tmp_path / "cut.wav", 1.0, 4 * SAMPLE_RATE * 2)  # claims 4 s, holds 1 s
    with pytest.warns(AudioWarning, match=r"cut.wav: the file is truncated or its header is wrong: .* using the 1\.00 s it holds"):
        wave = load_audio(path)
    assert wave.shape[0] == SAMPLE_RATE
    sf.write(path, tone(1.0), SAMPLE_RATE)  # an intact file: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(path)


def test_many_channels_and_a_high_rate_are_mixed_and_resampled(tmp_path):
    path = tmp_path / "surround.flac"
    sf.write(path, tone(1.0, rate=192_000, channels=8), 192_000)
    wave = load_audio(path)
    assert wave.shape == (SAMPLE_RATE,) and 0.25 < np.abs(wave).max() < 0.35


def test_over_long_is_its_own_kind_of_error(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, tone(3.0), SAMPLE_RATE)
    with pytest.raises(AudioTooLong, match="3 s long, over the 2 s limit. Trim the sound"):
        load_audio(path, max_seconds=2)
