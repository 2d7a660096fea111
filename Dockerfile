# The suite with a CUDA torch, for `--software-deployment-method apptainer` and the Kubernetes
# executor (the workflow's `container:`; README: Running on a cluster).
#
#   docker build --build-arg TORCH_CUDA=cu128 -t ghcr.io/<you>/hico-bench:0.1.0-cu128 .
#   docker push ghcr.io/<you>/hico-bench:0.1.0-cu128
#   snakemake --profile workflows/profiles/slurm --software-deployment-method apptainer \
#       --config container=docker://ghcr.io/<you>/hico-bench:0.1.0-cu128
#
# TORCH_CUDA selects the torch wheel: cu126 | cu128 | cu130 | cpu (the workflow's torch_build;
# cu130 needs NVIDIA driver >= 580 and has no Volta kernels). The CUDA runtime comes with the
# wheel; the node's driver comes from the host (apptainer --nv, the Kubernetes NVIDIA device plugin).
# Versions are the lock files'; Snakemake and its executor plugins (requirements-extras.lock, which
# includes requirements.lock) are in the image because the Kubernetes executor runs Snakemake
# inside each job's pod.
FROM python:3.11-slim-bookworm

ARG TORCH_CUDA=cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

# git: provenance records the commit; procps: Snakemake's resource benchmarks
RUN apt-get update \
    && apt-get install -y --no-install-recommends git procps \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/hico-bench
COPY requirements.lock requirements-extras.lock pyproject.toml README.md ./
RUN pip install "torch==2.14.1+${TORCH_CUDA}" "torchvision==0.29.1+${TORCH_CUDA}" \
        --extra-index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
    && pip install -r requirements-extras.lock

COPY hico ./hico
COPY baselines ./baselines
COPY workflows ./workflows
COPY Snakefile ./
RUN pip install --no-deps . \
    && python -c "import hico.train, hico.evaluate; print('hico-bench', hico.__version__)"

LABEL org.opencontainers.image.title="hico-bench" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="hico-bench with torch ${TORCH_CUDA}"
WORKDIR /workdir
