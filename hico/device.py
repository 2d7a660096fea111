"""The torch device a job runs on, and a loud stop when a job given GPUs sees none.

A cluster job asks the scheduler for GPUs (the workflow's ``gpu`` resource, passed to the CLI as
``--gpus``). If the node's driver is too old for the installed torch build, or the build is the
CPU wheel, ``torch.cuda.is_available()`` is false and ``device: auto`` would quietly train on the
CPU inside a GPU allocation for hours. :func:`resolve_device` turns that into an error naming the
node and the torch build, unless the config asked for the CPU on purpose (``device: cpu``).
"""

from __future__ import annotations

import os
import socket

import torch

from hico.errors import HicoError

AUTO = ("", "auto")


class DeviceError(HicoError, RuntimeError):
    """A requested or allocated GPU that torch cannot use on this node."""


def torch_build() -> str:
    """``torch 2.14.1+cu128 (CUDA 12.8)`` or ``torch 2.14.1+cpu (CPU-only build)``."""
    cuda = torch.version.cuda
    return f"torch {torch.__version__} ({f'CUDA {cuda}' if cuda else 'CPU-only build'})"


def _no_cuda(what: str) -> DeviceError:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return DeviceError(
        f"{what}, but torch sees no CUDA device on host {socket.gethostname()} with {torch_build()}"
        f"{f', CUDA_VISIBLE_DEVICES={visible!r}' if visible is not None else ''}. Install the torch build "
        "that matches this node's driver (the workflow's `torch_build: cu126|cu128|cu130`, or "
        "pip install torch --index-url https://download.pytorch.org/whl/<build>; README: Running on a "
        "cluster), or set `device: cpu` to run on the CPU on purpose"
    )


def resolve_device(requested: str | None, gpus: int = 0) -> torch.device:
    """The device for ``requested`` (None, "", "auto", "cpu", "cuda", "cuda:1", ...).

    ``auto`` is CUDA when torch sees a GPU, else the CPU. ``gpus`` is how many GPUs the job was
    given: with ``gpus > 0`` and no CUDA the job stops with :class:`DeviceError`, unless
    ``requested`` is "cpu". An explicit CUDA device without CUDA is the same error. A CUDA device
    without an index gets ``LOCAL_RANK`` (torchrun's process-local GPU; 0 otherwise).
    """
    name = (requested or "").strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name in AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if gpus > 0:
            raise _no_cuda(f"this job was given {gpus} GPU(s) (--gpus {gpus})")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise DeviceError(f"device {requested!r} is not a torch device ({e}); use cpu, cuda, cuda:<index> or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _no_cuda(f"device {requested!r} was requested")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device
