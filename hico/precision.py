"""Which precision a device runs in: bf16 autocast where the hardware does bf16 natively.

CUDA: bf16 autocast by default (``amp``). CPU: bf16 autocast only where oneDNN has native bf16
kernels (AVX512-BF16 or AMX); elsewhere PyTorch emulates bf16 and it is slower than fp32, so
those CPUs stay in fp32 (``cpu_amp``).
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    """oneDNN runs bf16 natively here (AVX512-BF16 or AMX); elsewhere CPU bf16 is emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_autocast_enabled(device: torch.device, cuda_amp: bool = True, cpu_amp: bool = True) -> bool:
    """Whether to run under ``torch.autocast(device.type, torch.bfloat16)`` on ``device``."""
    if device.type == "cuda":
        return cuda_amp
    return device.type == "cpu" and cpu_amp and cpu_has_native_bf16()
