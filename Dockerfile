# The audio-to-image app in a container.
#
#   docker build -t audio2image .                                   # CPU torch (default)
#   docker build -t audio2image:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 7860:7860 -v audio2image-hf:/data/hf audio2image
#   docker run --gpus all -p 7860:7860 -v audio2image-hf:/data/hf audio2image:gpu
#   docker build -t audio2image --build-arg TORCH_INDEX=https://pypi.example.org/simple .   # a mirror (see README)
#
# The CUDA wheels bring their own CUDA runtime (nvidia-* pip packages), so the same slim base serves
# both variants; the host needs only the NVIDIA driver and the NVIDIA Container Toolkit.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False

# libsndfile decodes wav/flac/ogg/mp3 (hearing.audio). Debian's security updates replace exact package
# versions, so pinning one would break later builds; the base image tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

# torch is installed on its own, from the PyTorch index that matches the device, before the rest of
# the pinned requirements (whose torch==2.13.0 it then satisfies: 2.13.0+cpu is version 2.13.0).
# Declared here, below the apt layer, so that switching CPU/GPU reuses that layer from the cache.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Run as an unprivileged user. The code stays owned by root (read-only to the app); only the model
# cache is the user's. The volume is declared after the chown so a new named volume inherits it.
RUN groupadd --gid 1000 app \
    && useradd --create-home --uid 1000 --gid app app \
    && mkdir -p /data/hf \
    && chown -R app:app /data
VOLUME ["/data/hf"]

# Everything app.py imports, and nothing else (tests/test_dockerfile.py starts the app from a copy of exactly these
# paths and asks it for a picture): the app, the packages of the sound → image → score path, world/ (world.scenes
# tells the page what the offline models understand), the example sounds and the offline default models.
WORKDIR /app
COPY app.py ./
COPY hearing/ hearing/
COPY align/ align/
COPY generate/ generate/
COPY scoring/ scoring/
COPY evaluation/ evaluation/
COPY architectures/ architectures/
COPY world/ world/
COPY examples/ examples/
# The offline default the app serves without a model hub (python -m world.rebuild made it); models/world_stages is
# what a rebuild goes on from, not what the app serves.
COPY models/world/ models/world/

# Numeric, so orchestrators that enforce runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
EXPOSE 7860

# No curl in the slim image: ask the app's own page with Python. The world in miniature serves within seconds; the
# long start period covers a first start with AUDIO2IMAGE_MODELS=real, which downloads several GB into the volume.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://localhost:%s/' % os.environ.get('GRADIO_SERVER_PORT', '7860'), timeout=8)"]

# The app handles SIGTERM itself (python is PID 1 here): `docker stop` ends a generation under way at its next
# step (its client is told), closes the server and exits 0 within 5 s, well inside docker's 10 s.
STOPSIGNAL SIGTERM
CMD ["python", "app.py"]
