"""Momentum (EMA) encoders shared by MoCo v2, BYOL and UCL.

Not a method (no YAML, no ``@register_method``): the three helpers of lightly's
``lightly/models/utils.py`` (``deactivate_requires_grad``, ``update_momentum``) and
``lightly/utils/scheduler.py`` (``cosine_schedule``), in our words.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module``: the key/target network at initialisation.

    Its parameters stay ``nn.Parameter`` with ``requires_grad=False`` so they are in the
    state_dict (exact resume) but in no optimiser group (``PretrainMethod.param_groups``)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def update_momentum(target: nn.Module, online: nn.Module, m: float) -> None:
    """``theta_t <- m * theta_t + (1 - m) * theta_o`` over parameters (MoCo's
    ``_momentum_update_key_encoder``; buffers such as BN running stats are the target's own)."""
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        p_t.mul_(m).add_(p_o.detach(), alpha=1.0 - m)


def cosine_momentum(progress: float, base: float) -> float:
    """BYOL's schedule ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2`` with
    ``progress = k / K`` in [0, 1]: ``base`` at the start, 1 at the end."""
    progress = min(max(float(progress), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
