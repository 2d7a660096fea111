"""Provenance stamped on every output.

Each ``metrics.json``, ``encoder.pt`` meta and table row can be traced to: the git commit of the
suite, the hash of the resolved config, package versions, the device and the seed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def config_hash(config: Any) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                          text=True, timeout=5).stdout.strip()


def git_sha() -> str:
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device=None) -> str:
    """The GPU's name for a CUDA device, else the CPU's (torch is imported only for CUDA)."""
    if str(device or "cpu").startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def package_version(module: str, distribution: str | None = None) -> str | None:
    """A package's version without importing it (a torch-free command stays torch-free)."""
    if module in sys.modules:
        return getattr(sys.modules[module], "__version__", None)
    try:
        return importlib.metadata.version(distribution or module)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(config: Any = None, seed: int | None = None, device=None) -> dict[str, Any]:
    from hico.warm import started_warm

    return {
        "git_sha": git_sha(),
        "config_hash": config_hash(config) if config is not None else None,
        "seed": seed,
        "device": device_name(device),
        "versions": {
            "python": platform.python_version(),
            "torch": package_version("torch"),
            "timm": package_version("timm"),
            "numpy": package_version("numpy"),
            "sklearn": package_version("sklearn", "scikit-learn"),
        },
        # forked by a warm-start server (hico.warm): its Snakemake benchmark did not measure it
        "warm_start": started_warm(),
    }
