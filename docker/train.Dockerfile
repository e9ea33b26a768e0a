# The training image: a papermill run of nbs/train.ipynb; whatever follows the image name goes to papermill.
#   docker build -f docker/train.Dockerfile -t opsbook-train .
#   docker run --gpus all --shm-size 2g -v "$PWD/runs:/runs" --user "$(id -u):$(id -g)" opsbook-train \
#       /runs/report.ipynb -p epochs 5 -p run_name digits
# The run writes to /runs/<run_name> (a volume); data from a volume too (-v ~/data/pets:/data/pets:ro -p data_dir /data/pets);
# W&B from the environment (-e WANDB_API_KEY -p wandb_mode online; WANDB_PROJECT, WANDB_ENTITY, ...).
# Build arguments: BASE, any image with python3 >= 3.11, its venv module and apt; TORCH_INDEX, where torch comes from:
# PyPI (the default) has CUDA builds that bring their own CUDA runtime, so a GPU needs only the host's driver and
# --gpus; https://download.pytorch.org/whl/cpu gives a CPU-only image a fraction of the size.
# pip's settings as in docker/api.Dockerfile: build secrets pip.conf and ca.crt, never stored in a layer.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH_INDEX=https://pypi.org/simple
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev git \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "$TORCH_INDEX" "torch>=2.7,<2.15" "torchvision>=0.22,<0.30"
WORKDIR /opsbook
COPY pyproject.toml README.md ./
COPY opsbook opsbook
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    /opt/venv/bin/pip install --no-cache-dir .
COPY nbs/train.ipynb nbs/
RUN groupadd --system --gid 10001 opsbook \
    && useradd --system --uid 10001 --gid opsbook --no-create-home --shell /usr/sbin/nologin opsbook \
    && mkdir -p /runs /data && chmod 1777 /runs /data . \
    && ln -s /runs runs && ln -s /data data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=opsbook \
    OPSBOOK_DATA=/data/digits
VOLUME ["/runs", "/data"]
USER 10001:10001
ENTRYPOINT ["papermill", "nbs/train.ipynb"]
CMD ["/runs/report.ipynb"]
