"""HiCo's feature pyramid over the backbone stages c2..c5 (Lin et al., FPN, CVPR 2017).

Reproduces ``FPNresnet18`` of the released code (``train_HiCo/models/fpn.py``), generalised to
any :class:`~hico.models.backbone.Backbone` through its ``channels``. Module names follow the
release (``toplayer``, ``latlayer1..3``, ``smooth1..3``) so its checkpoints map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeaturePyramid(nn.Module):
    """Top-down pyramid ``[c2, c3, c4, c5] -> [p2, p3, p4, p5]``, every level ``out_channels``.

    As released (``FPNresnet18.forward``)::

        p5 = toplayer(c5)                                  # 1x1, no 3x3 smoothing
        t4 = up(p5 -> size of c4) + latlayer1(c4)          # 1x1 laterals
        t3 = up(t4 -> size of c3) + latlayer2(c3)          # from t4 *before* smoothing
        t2 = up(t3 -> size of c2) + latlayer3(c2)
        p4, p3, p2 = smooth1(t4), smooth2(t3), smooth3(t2) # 3x3, padding 1

    ``up`` is bilinear resizing to the lateral map's size with ``align_corners=False`` (what
    the release's ``F.upsample(..., mode='bilinear')`` does), so any input size works; output
    strides are those of the backbone (4, 8, 16, 32).

    Args:
        in_channels: channels of c2..c5 (``Backbone.channels``; resnet18 ``[64, 128, 256, 512]``).
        out_channels: channels of every pyramid level (released 256).
        smooth_p4: build and apply ``smooth1``. HiCo's loss never uses p4 (its ``l4`` head is
            dead), so ``smooth1`` gets no gradient; with ``False`` it is not built (no unused
            parameters for DDP) and ``forward`` returns ``None`` in place of p4.

    Shapes: ``c_k`` ``[B, in_channels[k-2], H/2^k, W/2^k]`` -> ``p_k`` ``[B, out_channels,
    H/2^k, W/2^k]``.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, smooth_p4: bool = True):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"FeaturePyramid needs the channels of c2..c5 (4 values), got {in_channels}")
        c2, c3, c4, c5 = (int(c) for c in in_channels)
        self.in_channels = [c2, c3, c4, c5]
        self.out_channels = int(out_channels)
        self.smooth_p4 = bool(smooth_p4)
        d = self.out_channels
        self.toplayer = nn.Conv2d(c5, d, kernel_size=1)
        self.latlayer1 = nn.Conv2d(c4, d, kernel_size=1)
        self.latlayer2 = nn.Conv2d(c3, d, kernel_size=1)
        self.latlayer3 = nn.Conv2d(c2, d, kernel_size=1)
        self.smooth1 = nn.Conv2d(d, d, kernel_size=3, padding=1) if smooth_p4 else None
        self.smooth2 = nn.Conv2d(d, d, kernel_size=3, padding=1)
        self.smooth3 = nn.Conv2d(d, d, kernel_size=3, padding=1)

    @staticmethod
    def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor | None]:
        c2, c3, c4, c5 = feats
        p5 = self.toplayer(c5)
        t4 = self._upsample_add(p5, self.latlayer1(c4))
        t3 = self._upsample_add(t4, self.latlayer2(c3))
        t2 = self._upsample_add(t3, self.latlayer3(c2))
        p4 = self.smooth1(t4) if self.smooth1 is not None else None
        return [self.smooth3(t2), self.smooth2(t3), p4, p5]
