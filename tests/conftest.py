"""Shared fixtures: tiny models from configs (architectures/tiny_models.py) and synthetic audio-caption data.

Tests that need real weights from the Hub are marked `real_weights` and run only with
AUDIO2IMAGE_REAL_WEIGHTS=1 (and Hub access).
"""

from __future__ import annotations

import os

# Tiny models gain nothing from threads, and two threads that share two cores with other work run them
# several times slower. Set before torch loads, so subprocesses the tests start inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from architectures import tiny_models  # noqa: E402

torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "real_weights: needs real model weights from the Hub (AUDIO2IMAGE_REAL_WEIGHTS=1)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("AUDIO2IMAGE_REAL_WEIGHTS") == "1":
        return
    skip = pytest.mark.skip(reason="real weights: set AUDIO2IMAGE_REAL_WEIGHTS=1 (needs Hub access)")
    for item in items:
        if "real_weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_models.tiny_tokenizer()


@pytest.fixture
def text_encoder():
    return tiny_models.tiny_text_encoder()


@pytest.fixture
def feature_extractor():
    return tiny_models.feature_extractor()


@pytest.fixture
def audio_encoder():
    return tiny_models.tiny_audio_encoder()


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small synthetic audiofolder (train/ and test/ splits) whose sounds differ with their captions."""
    from align.synthetic_data import make_synthetic_audiofolder

    return make_synthetic_audiofolder(tmp_path_factory.mktemp("synthetic"), clips_per_caption=3, test_clips_per_caption=1, seconds=1.0, seed=0, spoken=False)
