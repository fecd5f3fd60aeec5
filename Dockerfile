# Images of the VAE project (pick one with --target; compose does it for you):
#   service      CPU inference service with the committed default model (also the last stage)
#   service-gpu  the same on onnxruntime-gpu with CUDA/cuDNN from PyPI (needs the NVIDIA container toolkit)
#   service-ray  the service with Ray Serve (the `ray` extra), for KubeRay or `serve deploy`
#   train        trains, exports and evaluates a model into /models (CPU torch from TORCH_INDEX_URL)
# Every image runs as the unprivileged user `vae` (UID 10001). Build with BuildKit (the default of
# current Docker and of `docker compose build`) so that building one target skips the others.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# Shared build base: a virtual environment in /opt/venv that the runtime stages copy as a whole.
# Dependencies come from the locks in requirements/ (`make lock` writes them from pyproject.toml's
# extras): exact versions, each with its sha256 hashes, installed with --require-hashes.
FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# ---------------------------------------------------------------------------------------------
# The project itself, the same for every image: pure Python, installed without dependencies into a
# tree shaped like /opt/venv (--root), which the image stages copy over their dependencies. Editing
# the code rebuilds only this stage and that copy, never a dependency layer.
FROM build-base AS build-app
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
COPY vae_manifest ./vae_manifest
RUN pip install --no-cache-dir --no-deps --no-warn-script-location --root /opt/app .

# ---------------------------------------------------------------------------------------------
# Dependency stages (this one and deps-gpu): the same step, each with its own lock. pip and
# setuptools are not needed at run time (about 20 MB).
FROM build-base AS deps-service
COPY requirements/service.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/service.txt \
    && pip uninstall --yes --quiet pip setuptools

# ---------------------------------------------------------------------------------------------
# Runtime base: no compilers, no build files, no tests; just Python, the venv and a user.
FROM ${PYTHON_IMAGE} AS runtime-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VAE_HOST=0.0.0.0 \
    VAE_PORT=8000 \
    VAE_MODEL_DIR=/app/models/mnist-vae \
    ORT_DISABLE_TELEMETRY=1
RUN groupadd --system --gid 10001 vae \
    && useradd --system --uid 10001 --gid vae --home-dir /app --no-create-home --shell /usr/sbin/nologin vae \
    && mkdir -p /app/models /models \
    && chown vae:vae /models
WORKDIR /app
EXPOSE 8000
# /readyz answers 200 only once the model is loaded and warm; urlopen raises on any other status.
# Python instead of curl: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VAE_PORT', '8000') + '/readyz', timeout=4)"]

# ---------------------------------------------------------------------------------------------
# The two service images (service and service-gpu): runtime base, their dependency stage's venv,
# the project over it, a check that it imports, the committed default model.
FROM runtime-base AS service
COPY --from=deps-service /opt/venv /opt/venv
COPY --from=build-app /opt/app/opt/venv /opt/venv
RUN ["python", "-c", "import onnxruntime, vae_manifest, service.app"]
COPY models/mnist-vae /app/models/mnist-vae
USER 10001:10001
CMD ["vae-serve"]

# ---------------------------------------------------------------------------------------------
# Ray Serve (`docker build --target service-ray`): the `ray` extra beside the service, for KubeRay's
# RayService (deploy/ray/rayservice.yaml) or `serve deploy deploy/ray/serve.yaml` on a cluster of
# these images. Alone, it starts a one-node Ray cluster and serves on VAE_HOST:VAE_PORT.
FROM build-base AS deps-ray
COPY requirements/ray.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/ray.txt \
    && pip uninstall --yes --quiet pip setuptools

FROM runtime-base AS service-ray
COPY --from=deps-ray /opt/venv /opt/venv
COPY --from=build-app /opt/app/opt/venv /opt/venv
RUN ["python", "-c", "import ray.serve, onnxruntime, service.ray_serve.app"]
COPY models/mnist-vae /app/models/mnist-vae
COPY deploy/ray/serve.yaml /app/deploy/ray/serve.yaml
# Ray writes its session files under /tmp and the user's home.
ENV RAY_USAGE_STATS_ENABLED=0 \
    HOME=/tmp
USER 10001:10001
CMD ["python", "-m", "service.ray_serve", "--config", "/app/deploy/ray/serve.yaml"]

# ---------------------------------------------------------------------------------------------
# onnxruntime-gpu's `cuda` and `cudnn` extras (in the lock) bring the CUDA runtime, cuBLAS, cuFFT,
# cuRAND and cuDNN as PyPI wheels, so the image needs no CUDA base image; only the host driver comes
# from the NVIDIA container toolkit. requirements/gpu.txt is built for CUDA 13 (driver 580 or
# newer); GPU_LOCK=requirements/gpu-cuda12.txt for an older driver (525 or newer).
FROM build-base AS deps-gpu
ARG GPU_LOCK=requirements/gpu.txt
COPY requirements/gpu.txt requirements/gpu-cuda12.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes -r "${GPU_LOCK}" \
    && pip uninstall --yes --quiet pip setuptools

FROM runtime-base AS service-gpu
COPY --from=deps-gpu /opt/venv /opt/venv
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Let the dynamic loader find the CUDA/cuDNN libraries that the nvidia-* wheels put in the venv.
RUN find /opt/venv/lib/python3.11/site-packages/nvidia -name 'lib*.so*' -printf '%h\n' \
        | sort -u > /etc/ld.so.conf.d/zz-nvidia-pypi.conf \
    && ldconfig
COPY --from=build-app /opt/app/opt/venv /opt/venv
RUN ["python", "-c", "import onnxruntime, vae_manifest, service.app"]
COPY models/mnist-vae /app/models/mnist-vae
ENV VAE_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
CMD ["vae-serve"]

# ---------------------------------------------------------------------------------------------
# Training image. PyPI's Linux torch wheel pulls gigabytes of CUDA libraries; requirements/train.txt
# pins the CPU build, torch==2.13.0+cpu, which only PyTorch's CPU index serves. Its hash in the lock
# is that of the official wheel there, so --require-hashes holds for torch too; a mirror given as
# TORCH_INDEX_URL must serve that same file.
FROM build-base AS train
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Only for a plain-http mirror of that index (pip refuses http hosts it does not trust).
ARG PIP_TRUSTED_HOST=""
COPY requirements/train.txt ./requirements/
RUN pip install --no-cache-dir --require-hashes --extra-index-url "${TORCH_INDEX_URL}" \
        -r requirements/train.txt
COPY --from=build-app /opt/app/opt/venv /opt/venv
RUN python -c "import torch, onnxruntime, training" \
    && groupadd --system --gid 10001 vae \
    && useradd --system --uid 10001 --gid vae --home-dir /home/vae --create-home --shell /usr/sbin/nologin vae \
    && mkdir -p /models /data \
    && chown vae:vae /models /data
# /models receives the model directory, /data caches MNIST (mount volumes on both: a named
# volume starts as a copy of the image's directory, owned by the unprivileged user).
ENV PYTHONUNBUFFERED=1 \
    VAE_DATA_DIR=/data
WORKDIR /home/vae
USER 10001:10001
CMD ["python", "-m", "training", "all", "--model-dir", "/models/mnist-vae"]

# ---------------------------------------------------------------------------------------------
# A plain `docker build .` builds the last stage: the CPU service. BuildKit builds only the
# stages a target needs; the classic builder builds every stage above the target, so with it
# always pass `--target service` (stages are ordered so that this builds only the service
# stages: build-base, build-app, deps-service, runtime-base).
FROM service AS default
