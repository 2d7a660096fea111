"""Projection, prediction and classification heads.

- :class:`ProjectionHead`: the MLP every method puts on a pooled feature (SimCLR, MoCo v2,
  BYOL, SimSiam settings in its docstring).
- :class:`FlattenHead`: HiCo's released level head, a Linear on the whole flattened map
  (``train_HiCo/models/resnet_simclr.py``: ``l2``/``l22``, ``l3``/``l33``, ``l5``/``l55``, ``l4``).
- :class:`PooledHead`: global average pool then an MLP; the size-agnostic, cheap alternative.
- :class:`ClassifierHead`: HiCo's supervised branch ``fc(relu(lf(avgpool(c5))))``.
- :class:`DINOHead`: DINO's projection MLP, L2 bottleneck and weight-normalised prototype layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _pair(hw: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(hw, int):
        return hw, hw
    h, w = hw
    return int(h), int(w)


class ProjectionHead(nn.Sequential):
    """MLP ``in_dim -> hidden_dim (x n_layers-1) -> out_dim``; input and output ``[B, dim]``.

    Hidden block: ``Linear(bias=hidden_bias) [-> BatchNorm1d] -> ReLU``; last layer:
    ``Linear(bias=last_bias) [-> BatchNorm1d(affine=last_bn_affine)]``.

    Settings of the standard recipes (``d`` = backbone features):

    - SimCLR / USCL: ``ProjectionHead(d, d, 256)`` (ResNet-18: 512 -> 512 -> 256).
    - MoCo v2: ``ProjectionHead(d, d, 128)`` (2048 -> 2048 -> 128, ``moco/builder.py``).
    - BYOL projector: ``ProjectionHead(d, 4096, 256, batch_norm=True)``; predictor
      ``ProjectionHead(256, 4096, 256, batch_norm=True)``.
    - SimSiam projector: ``ProjectionHead(d, 2048, 2048, n_layers=3, batch_norm=True,
      hidden_bias=False, last_bias=False, last_batch_norm=True, last_bn_affine=False)``;
      predictor ``ProjectionHead(2048, 512, 2048, batch_norm=True, hidden_bias=False)``
      (``simsiam/builder.py``; its last fc bias is frozen there, absent here: the same
      function since the affine-free BN removes it).
    - IVPP: ``ProjectionHead(d, 768, 768, batch_norm=True, last_bias=False)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        n_layers: int = 2,
        batch_norm: bool = False,
        hidden_bias: bool = True,
        last_bias: bool = True,
        last_batch_norm: bool = False,
        last_bn_affine: bool = True,
    ):
        if n_layers < 1:
            raise ValueError(f"ProjectionHead: n_layers must be >= 1, got {n_layers}")
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(f"ProjectionHead: dims must be >= 1, got {in_dim}, {hidden_dim}, {out_dim}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(n_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=hidden_bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=last_bias))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
        super().__init__(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim


class FlattenHead(nn.Module):
    """HiCo's released level head: ``fc2(relu(fc1(flatten(p))))``, ``[B, C, H, W] -> [B, out]``.

    ``fc1`` is ``Linear(C*H*W, hidden)`` on the whole flattened map (no pooling, no BN), ``fc2``
    is ``Linear(hidden, out)`` (``l2``/``l22`` on p2, ``l3``/``l33`` on p3, ``l5``/``l55`` on p5).
    ``out=None`` leaves ``fc2`` out and returns ``relu(fc1(.))``: the release's ``l4`` on p4
    (computed, never in a loss) and the eval protocol's frozen ``relu(l_k(p_k))`` features.

    The head is tied to one map size, hence one input size: at 224 px with 256 channels,
    ``fc1`` has 205.5 M parameters on p2 (56x56), 51.4 M on p3, 12.8 M on p4, 3.2 M on p5.

    Args:
        channels: C of the map. spatial_hw: its (H, W), or one int for a square map.
        hidden: width of ``fc1`` (released 256). out: width of ``fc2``, or None.
    """

    def __init__(self, channels: int, spatial_hw: int | tuple[int, int], hidden: int = 256,
                 out: int | None = 256):
        super().__init__()
        h, w = _pair(spatial_hw)
        self.map_shape = (int(channels), h, w)
        self.fc1 = nn.Linear(channels * h * w, hidden)
        self.fc2 = nn.Linear(hidden, out) if out is not None else None
        self.out_dim = out if out is not None else hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.map_shape:
            raise ValueError(
                f"FlattenHead was built for feature maps {list(self.map_shape)} but got "
                f"{list(x.shape[1:])}: a flattened head fixes the input size. Train at the "
                f"image size the heads were built for, or use pooled heads (`heads: pooled`)."
            )
        x = torch.relu(self.fc1(torch.flatten(x, start_dim=1)))
        return self.fc2(x) if self.fc2 is not None else x


class PooledHead(nn.Module):
    """Global average pool then :class:`ProjectionHead`: ``[B, C, H, W] -> [B, out]``, any H, W.

    The cheap replacement for :class:`FlattenHead` (a deviation from the release: it discards
    the spatial layout the flattened head can see). Defaults mirror the released level head's
    widths: ``C -> 256 -> ReLU -> 256``. ``mlp_kwargs`` go to :class:`ProjectionHead`.
    """

    def __init__(self, channels: int, hidden: int = 256, out: int = 256, **mlp_kwargs):
        super().__init__()
        self.mlp = ProjectionHead(channels, hidden, out, **mlp_kwargs)
        self.out_dim = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.mean(dim=(2, 3)))


class ClassifierHead(nn.Module):
    """HiCo's supervised branch: ``fc(relu(lf(f)))``, ``f = avgpool(c5)``; ``[B, in_dim] ->
    [B, num_classes]`` (a ``[B, C, H, W]`` map is average-pooled first).

    Released: ``lf = Linear(512, 256)``, ``fc = Linear(256, 12)`` (US-4's 12 classes); the
    logits feed the softened CE (:func:`hico.losses.soft_cross_entropy`).
    """

    def __init__(self, in_dim: int = 512, num_classes: int = 12, hidden: int = 256):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ClassifierHead: num_classes must be >= 1, got {num_classes}")
        self.lf = nn.Linear(in_dim, hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean(dim=(2, 3))
        return self.fc(torch.relu(self.lf(x)))


class DINOHead(nn.Module):
    """DINO's head (Caron et al., ICCV 2021; ``vision_transformer.py`` ``DINOHead``):
    ``[B, in_dim] -> [B, out_dim]`` logits of ``out_dim`` prototypes.

    ``mlp``: ``Linear(in, hidden) [BN] GELU`` x (n_layers - 1) then ``Linear(hidden, bottleneck)``
    (truncated normal std 0.02, zero bias); the bottleneck output is L2-normalised; the last layer
    is ``weight_norm(Linear(bottleneck, out_dim, bias=False))`` with its norm g = 1, frozen when
    ``norm_last_layer`` (then every prototype is a unit vector and the logits are cosines).

    ``forward(x, freeze_last_layer=True)`` computes the last layer with its weight detached: no
    gradient reaches it, which is DINO's ``cancel_gradients_last_layer`` for the first epoch.
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        if n_layers < 1 or min(in_dim, out_dim, hidden_dim, bottleneck_dim) < 1:
            raise ValueError(f"DINOHead: n_layers and dims must be >= 1, got {n_layers}, "
                             f"{in_dim}, {out_dim}, {hidden_dim}, {bottleneck_dim}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(n_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # built after the init above, as released: its direction keeps nn.Linear's default init
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)  # [B, bottleneck], unit norm
        weight = self.last_layer.weight  # g * v / |v| per prototype: [out_dim, bottleneck]
        return F.linear(x, weight.detach() if freeze_last_layer else weight)
