"""Shared fixtures: tiny models from configs (architectures/tiny_models.py) and synthetic audio-caption data.

Every fixture and helper that more than one test file uses lives here: no test module imports from another.

Tests that need real weights from the Hub are marked `real_weights` and run only with
AUDIO2IMAGE_REAL_WEIGHTS=1 (and Hub access).
"""

from __future__ import annotations

import json
import os
import signal
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

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from hearing.audio import SAMPLE_RATE  # noqa: E402
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
    from world.synthetic_data import make_synthetic_audiofolder

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


# --- sounds: a tone, a WAV whose header lies, an audio folder with metadata ---------------------------------------


def tone(seconds: float, freq: float = 440.0, rate: int = SAMPLE_RATE, amplitude: float = 0.3, channels: int = 1) -> np.ndarray:
    """A float32 sine of `seconds` at `freq` Hz and peak `amplitude`: (samples,), or (samples, channels) when channels > 1."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def wav_with_data_size(path: Path, seconds: float, claimed_bytes: int) -> Path:
    """A 16-bit WAV whose header claims `claimed_bytes` of samples while the file holds `seconds` of them."""
    sf.write(path, tone(seconds), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", claimed_bytes)
    data[4:8] = struct.pack("<I", min(claimed_bytes + 36, 0xFFFFFFFF))
    path.write_bytes(bytes(data))
    return path


def write_folder(folder: Path, rows: list[dict], files: dict) -> Path:
    """An audiofolder: `files` (name: bytes, or name: (rate, wave)) and metadata.jsonl of `rows`, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            rate, wave = content
            sf.write(folder / name, wave, rate)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


# --- the tiny pipeline: one builder, a saved copy, the CLI's fast flags, stand-in scorers -------------------------


# `python -m generate` flags that draw in seconds on the tiny pipeline: 2 steps at 32 × 32 pixels, no progress bar.
TINY = ["--steps", "2", "--height", "32", "--width", "32", "--quiet"]


def build_pipeline(text_mixing: bool = False):
    """The tiny AudioToImagePipeline (progress bar off); with `text_mixing`, its text encoder and tokenizer too."""
    from hearing.text_states import encode_captions
    from generate.pipeline import AudioToImagePipeline

    text_encoder, tokenizer = tiny_models.tiny_text_encoder(), tiny_models.tiny_tokenizer()
    empty = encode_captions([""], text_encoder, tokenizer)[0]
    pipe = AudioToImagePipeline(
        vae=tiny_models.tiny_vae(), audio_encoder=tiny_models.tiny_audio_encoder(empty_embedding=empty),
        feature_extractor=tiny_models.feature_extractor(), unet=tiny_models.tiny_unet(), scheduler=tiny_models.sd21_scheduler(),
        text_encoder=text_encoder if text_mixing else None, tokenizer=tokenizer if text_mixing else None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    """A folder holding the tiny pipeline with text mixing, saved as `python -m generate --pipeline` loads it."""
    folder = tmp_path_factory.mktemp("pipeline")
    build_pipeline(text_mixing=True).save_pretrained(folder)
    return folder


class BrightnessScorer:
    """Deterministic stand-in for the CLAP + CLIP scorer: brighter is better."""

    def __init__(self):
        self.calls = []

    def score_images(self, audio_16k_mono: np.ndarray, images: list) -> torch.Tensor:
        self.calls.append((audio_16k_mono.shape, len(images)))
        return torch.tensor([float(np.asarray(im, dtype=np.float32).mean()) for im in images])


class CaptionScorer(BrightnessScorer):
    """Hears one caption in every sound (a stand-in for CLAP's nearest vocabulary entry)."""

    def __init__(self, caption: str):
        super().__init__()
        self.caption, self.heard = caption, []

    def caption_for(self, audio_16k_mono):
        self.heard.append(len(audio_16k_mono))
        return self.caption


# --- training runs in subprocesses: saved tiny models, their environment, their log, a kill mid-run ---------------


SHORT_WINDOW_TOKENS = 12  # about 1 s: the runs that only test the loop's mechanics use it to stay fast


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """The tiny models saved as folders, the way the training script takes real ones."""
    root = tmp_path_factory.mktemp("models")
    tiny_models.tiny_audio_encoder().save_pretrained(root / "audio")
    tiny_models.tiny_audio_encoder(num_audio_tokens=SHORT_WINDOW_TOKENS).save_pretrained(root / "audio_short")
    tiny_models.tiny_text_encoder().save_pretrained(root / "text_encoder")
    tiny_models.tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root


def subprocess_env() -> dict:
    """The environment a training subprocess runs in: this repository importable, one thread, no tokenizer threads."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def read_log(output_dir: Path) -> list[dict]:
    """The records of a run's log.jsonl, less a last line cut short by a kill."""
    return [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines() if line.endswith("}")]  # not a line cut by a kill


def kill_after_checkpoint(command: list[str], out: Path, step: int, output: Path) -> int:
    """Start a training run, SIGKILL it once checkpoint-<step> is saved and a later step is logged; its return code.
    Its output goes to `output`, shown if it ends before it can be killed."""
    with open(output, "w") as first_output:
        first = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=first_output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not ((out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").exists() and max((r["step"] for r in read_log(out)), default=0) > step):
            assert first.poll() is None, "the first run ended before it could be killed:\n" + output.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint-{step} within 4 minutes"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        return first.wait()


# --- several processes: a launcher run that shows every process's stack if it hangs -------------------------------


def run_processes(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a launcher and its processes; if they are still running after `timeout` seconds, fail the test with the
    stack of every process. A rank that never exits (seen once here after a finished run) then says where it waits,
    instead of leaving only a timeout and an orphan process."""
    import psutil  # accelerate's own dependency

    # PYTHONFAULTHANDLER: a process sent SIGABRT prints every thread's stack
    env = {**subprocess_env(), "PYTHONFAULTHANDLER": "1"}
    launcher = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = launcher.communicate(timeout=timeout)
        return subprocess.CompletedProcess(command, launcher.returncode, out, err)
    except subprocess.TimeoutExpired:
        family = psutil.Process(launcher.pid).children(recursive=True)
        for process in family:
            process.send_signal(signal.SIGABRT)  # faulthandler writes its stacks to the stderr we read
        _, alive = psutil.wait_procs(family, timeout=10)
        for process in [*alive, launcher]:
            process.kill()
        out, err = launcher.communicate()
        pytest.fail(f"still running after {timeout:.0f} s; the stacks of its processes:\n{err[-6000:]}")


# --- streaming: the synthetic training split packed as tar shards -------------------------------------------------


BAD_KEY = "bad-000"  # the key of the one undecodable member `pack` adds
NOT_AUDIO = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(64))  # a WAV header and garbage: load_audio raises AudioError


def pack(synthetic_data, out, samples_per_shard=4, as_json=False):
    """The synthetic training split as tar shards (key.wav + key.txt, or key.json), with one undecodable member.
    (`datasets` reads a shard set's member types from its first samples: every sample has the same ones.)"""
    from align.data import pairs_from_folder
    from align.streaming import write_shards

    pairs = pairs_from_folder(Path(synthetic_data) / "train")
    members = [(f"clip-{i:03d}", Path(src).read_bytes(), "wav", {"caption": cap, "source": "synthetic"} if as_json else cap)
               for i, (src, cap) in enumerate(zip(pairs.sources, pairs.captions))]
    members.insert(5, (BAD_KEY, NOT_AUDIO, "wav", {"caption": "a broken recording"} if as_json else "a broken recording"))
    paths = write_shards(members, out, samples_per_shard)
    good = {key for key, *_ in members if key != BAD_KEY}
    return paths, good


# --- the world in miniature ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    """A world built with one training voice and one clip per voice (skipped without espeak-ng)."""
    import shutil

    from world.build import TRAIN_VOICES, build_world

    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("world")
    build_world(out, images_per_caption=1, clips_per_voice=1, test_clips_per_voice=1, train_voices=TRAIN_VOICES[:1])
    return out
