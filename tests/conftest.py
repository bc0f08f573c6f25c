"""Shared fixtures: tiny models from configs (architectures/tiny_models.py) and synthetic audio-caption data.

Tests that need real weights from the Hub are marked `real_weights` and run only with
AUDIO2IMAGE_REAL_WEIGHTS=1 (and Hub access).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


def save_tiny_sd_base(folder: Path) -> Path:
    """A tiny SD 2.1-like base model saved to `folder`: the tiny components and the DDIM config SD 2.1 ships
    (v-prediction, leading timesteps)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(
        vae=tiny_models.tiny_vae(), text_encoder=tiny_models.tiny_text_encoder(), tokenizer=tiny_models.tiny_tokenizer(),
        unet=tiny_models.tiny_unet(), scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small synthetic audiofolder (train/ and test/ splits) whose sounds differ with their captions."""
    from align.synthetic_data import make_synthetic_audiofolder

    return make_synthetic_audiofolder(tmp_path_factory.mktemp("synthetic"), clips_per_caption=3, test_clips_per_caption=1, seconds=1.0, seed=0, spoken=False)


# --- the app as a user starts it: `python app.py` in its own process ----------------------------------------------


ROOT = Path(__file__).resolve().parents[1]
# The browser tests (tests/test_app.py, tests/test_live.py) drive Debian's Chromium through Playwright, headless and
# offline; a test adds its own switches (the fake microphone's) to BROWSER_ARGS.
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(demo):
    """A Gradio app served in this process on a free port: its address while the block lasts, closed after."""
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@dataclass
class AppProcess:
    """A started `python app.py`: its process, its address, its log (stdout and stderr), and whether it served."""

    process: subprocess.Popen
    url: str
    log: Path
    served: bool

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_app(tmp_path):
    """Start `python app.py ARGS` (in `cwd`, the repository by default) on a free port, and wait until it serves or
    exits. Offline (HF_HUB_OFFLINE=1), one thread, its temp files and Gradio's cache under the test's tmp_path, no
    PYTHONPATH and no AUDIO2IMAGE_* variable of the caller's. Every process started is killed when the test ends."""
    started = []

    def start(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 240) -> AppProcess:
        port = free_port()
        log = tmp_path / f"app-{port}.log"
        (tmp_path / "tmp").mkdir(exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AUDIO2IMAGE_") and k != "PYTHONPATH"}
        env = {**base, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "TMPDIR": str(tmp_path / "tmp"), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), **(env or {})}
        with log.open("w") as sink:
            process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), *args], cwd=cwd,
                                       env=env, stdout=sink, stderr=subprocess.STDOUT)
        started.append(process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return AppProcess(process, f"http://127.0.0.1:{port}/", log, True)
            time.sleep(0.2)
        return AppProcess(process, f"http://127.0.0.1:{port}/", log, False)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def huge_png(path: Path, width: int, height: int) -> Path:
    """A valid grayscale PNG of `width` × `height` black pixels, written row by row: a few hundred KB on disk however
    many pixels it decodes to (what a picture bomb looks like), made without holding the picture in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row, rows_at_once = zlib.compressobj(9), bytes(1 + width), 256
    body = bytearray()
    for start in range(0, height, rows_at_once):
        body += packer.compress(row * min(rows_at_once, height - start))
    body += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(body)) + chunk(b"IEND", b""))
    return path
