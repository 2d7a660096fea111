"""HiCo (Zhang et al., ACCV 2022, "HiCo: Hierarchical Contrastive Learning for Ultrasound Video
Model Pretraining"; reference: 983632847/HiCo at commit 1eeacee, ``train_HiCo/simclr.py``,
``train_HiCo/models/resnet_simclr.py``, ``train_HiCo/models/fpn.py``, ``train_HiCo/loss/nt_xent.py``).

Backbone -> feature pyramid (``FPNresnet18``) -> one projection head per level:
local = p2 (``l2``/``l22``), medium = p3 (``l3``/``l33``; the paper's figure draws p4,
``medium_level: 4``), global = p5 (``l5``/``l55``); classifier ``fc(relu(lf(avgpool(c5))))``.
With NT = NT-Xent (T = 0.5) and ``ce`` the softened cross entropy (``soft_label_CrossEntropyLoss``,
alpha = 0.2, smoothing mass alpha/(B-1)) on the labelled videos of each view::

    L = 0.5 [NT(l_i,l_j) + NT(m_i,m_j) + NT(g_i,g_j)]                      # peer level
      + 0.5 [NT(g_i,m_i) + NT(g_j,m_j) + NT(g_i,l_i) + NT(g_j,l_j)]        # cross level, within a view
      + 0.2 [ce(view_i) + ce(view_j)]                                       # lumbda = 0.2

(``SimCLR._step`` + ``SimCLR.train``). The validation loss is the contrastive part alone on the
un-mixed pair, as ``SimCLR._validate`` (it picks ``best_model.pth``).

Differences from the release (all listed in ``hico.yaml``'s ``deviations`` and
``hico/REPRODUCTION.md``): one forward pass per view and step instead of four (the release
runs ``model(x)`` for the classifier and again inside ``_step``: same outputs and gradients, BN
running statistics updated once per view instead of twice); the release's ``l4`` head on p4
and its ``smooth1`` conv are computed there but never enter a loss, so they are not built here
(``FeaturePyramid(smooth_p4=False)`` unless ``medium_level == 4``); the dead duplicate
``relu(l2(.))``, ``relu(l3(.))``, ``relu(l5(.))`` of the release's forward are not computed.
Pair weights in the batch (``weights``) are not used: HiCo weights no pair.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hico.losses import (
    check_multilevel_args,
    check_smoothing,
    hico_multilevel_loss,
    soft_cross_entropy,
)
from hico.methods.base import PretrainMethod
from hico.models.fpn import FeaturePyramid
from hico.models.heads import ClassifierHead, FlattenHead, PooledHead
from hico.registry import register_method

LEVELS = ("local", "medium", "global")
HEAD_KINDS = ("flatten", "pooled")
FPN_CHANNELS = 256  # released: every pyramid level has 256 channels
PYRAMID_STRIDES = {2: 4, 3: 8, 4: 16, 5: 32}  # p_k has stride 2^k


@register_method("hico")
class HiCo(PretrainMethod):
    """HiCo's pretraining network and loss; defaults are the released code's.

    Args:
        temperature: NT-Xent temperature (``config.yaml`` ``loss.temperature: 0.5``).
        peer_weight, cross_weight: weights of the peer- and cross-level sums (``lumbda_ = 0.5``
            and ``1 - lumbda_``).
        lam: weight of each view's softened CE (``lumbda = [0.2]``); 0 leaves the classifier out.
        alpha: label smoothing of the CE (0.2).
        smoothing: ``"reference"`` (alpha/(B-1), B = labelled batch size, as released),
            ``"standard"`` (alpha over the classes) or ``"hard"`` (plain CE).
        peer, cross: keep the peer-level / cross-level terms (ablations).
        levels: pyramid levels with a head, any subset of local/medium/global containing global.
        cross_pairs: ``"within"`` a view (released code) or ``"across"`` views (paper figure).
        heads: ``"flatten"`` (released: Linear on the whole flattened map, tied to
            ``image_size``; ~260 M parameters at 224 px) or ``"pooled"`` (average pool + MLP).
        medium_level: 3 (released code, p3) or 4 (paper figure, p4).
        proj_dim: output width of every level head (``out_dim: 256``).
        hidden: width of each head's first Linear and of the classifier's ``lf`` (released 256).
    """

    # A ViT is refused rather than given a ViTDet-style simple pyramid: HiCo's peer and cross
    # level terms contrast features of *different depths* (c2, c3, c5 through the FPN: local =
    # early layers); a simple pyramid resamples the last block's map, so every level would have
    # the same depth and the method would no longer be HiCo (and its flattened heads assume the
    # released stride-4 p2).
    backbone_kinds = ("cnn",)
    backbone_requirement = (
        "HiCo contrasts a feature pyramid over backbone stages at strides 4, 8, 16 and 32 "
        "(c2..c5); a Vision Transformer has one token map at one stride. Use a hierarchical "
        "backbone (resnet18, resnet50, convnext_tiny, efficientnet_b0, ...)."
    )

    def __init__(
        self,
        temperature: float = 0.5,
        peer_weight: float = 0.5,
        cross_weight: float = 0.5,
        lam: float = 0.2,
        alpha: float = 0.2,
        smoothing: str = "reference",
        peer: bool = True,
        cross: bool = True,
        levels: list[str] | tuple[str, ...] = LEVELS,
        cross_pairs: str = "within",
        heads: str = "flatten",
        medium_level: int = 3,
        proj_dim: int = 256,
        hidden: int = 256,
        **base: Any,
    ):
        levels = tuple(levels)
        _check_params(temperature, peer_weight, cross_weight, lam, alpha, smoothing, peer, cross,
                      levels, cross_pairs, heads, medium_level, proj_dim, hidden)
        super().__init__(**base)
        self.temperature, self.peer_weight, self.cross_weight = float(temperature), float(peer_weight), float(cross_weight)
        self.lam, self.alpha, self.smoothing = float(lam), float(alpha), smoothing
        self.peer, self.cross, self.cross_pairs = bool(peer), bool(cross), cross_pairs
        self.levels = tuple(name for name in LEVELS if name in levels)  # canonical order
        self.head_kind, self.medium_level = heads, int(medium_level)
        # pyramid index of each level in FeaturePyramid's [p2, p3, p4, p5]
        self.level_k = {"local": 2, "medium": self.medium_level, "global": 5}

        uses_p4 = "medium" in self.levels and self.medium_level == 4
        self.fpn = FeaturePyramid(self.backbone.channels, FPN_CHANNELS, smooth_p4=uses_p4)
        self.heads = nn.ModuleDict({name: self._level_head(self.level_k[name], hidden, proj_dim)
                                    for name in self.levels})
        # released lf: 512 -> 256, fc: 256 -> 12 (US-4); no classes or lam = 0: no CE term
        self.classifier = (ClassifierHead(self.backbone.num_features, self.num_classes, hidden)
                           if self.num_classes > 0 and self.lam > 0 else None)

    def _level_head(self, k: int, hidden: int, proj_dim: int) -> nn.Module:
        if self.head_kind == "pooled":
            return PooledHead(FPN_CHANNELS, hidden, proj_dim)
        side = self.image_size // PYRAMID_STRIDES[k]  # 224 px: p2 56, p3 28, p4 14, p5 7
        return FlattenHead(FPN_CHANNELS, side, hidden, proj_dim)

    def project(self, x: torch.Tensor, with_logits: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """One forward pass of one view ``x`` [B, 3, S, S] -> (``{level: [B, proj_dim]}``, logits).

        ``logits`` is ``[B, num_classes]`` from the pooled c5 when ``with_logits`` and the
        classifier exists, else None.
        """
        feats = self.backbone.forward_pyramid(x)  # c2..c5: [B, C_k, S/2^k, S/2^k] (resnet18 C = 64..512)
        pyramid = self.fpn(feats)  # p2, p3, p4 (None unless medium_level 4), p5: [B, 256, S/2^k, S/2^k]
        z = {name: self.heads[name](pyramid[self.level_k[name] - 2]) for name in self.levels}  # [B, proj_dim]
        logits = self.classifier(feats[-1]) if with_logits and self.classifier is not None else None
        return z, logits

    def contrastive(self, z_i: dict[str, torch.Tensor], z_j: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``hico_multilevel_loss`` on the projections of both views: ``{"loss", parts}``."""

        def pair(name: str):
            return (z_i[name], z_j[name]) if name in self.levels else None

        return hico_multilevel_loss(
            pair("local"), pair("medium"), pair("global"), self.temperature, self.peer_weight,
            self.cross_weight, self.peer, self.cross, self.cross_pairs,
        )

    def training_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x_i, x_j = batch["views"]  # [B, 3, S, S] each (mixed frames)
        labels = batch["labels"]  # [B], -1 = unlabelled; both views share their video's label
        use_ce = self.classifier is not None and bool((labels >= 0).any())
        z_i, logits_i = self.project(x_i, with_logits=use_ce)
        z_j, logits_j = self.project(x_j, with_logits=use_ce)
        parts = self.contrastive(z_i, z_j)
        contrastive = parts.pop("loss")
        out = {"contrastive": contrastive, **parts}
        loss = contrastive
        if use_ce:
            # float(): under bf16 autocast the one-hot target would be built in bf16
            ce_i = soft_cross_entropy(logits_i.float(), labels, self.alpha, self.smoothing)
            ce_j = soft_cross_entropy(logits_j.float(), labels, self.alpha, self.smoothing)
            loss = loss + self.lam * (ce_i + ce_j)
            out.update(ce_i=ce_i, ce_j=ce_j)
        return {"loss": loss, **out}

    def sees_labels(self) -> bool:
        return self.classifier is not None

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Contrastive part only on the un-mixed pair (released ``_validate`` calls ``_step``)."""
        x_i, x_j = batch["views"]
        return self.contrastive(self.project(x_i)[0], self.project(x_j)[0])


def _check_params(temperature, peer_weight, cross_weight, lam, alpha, smoothing, peer, cross,
                  levels, cross_pairs, heads, medium_level, proj_dim, hidden) -> None:
    """At build time, the loss's own checks (``hico.losses``) and those of HiCo's network."""
    try:
        check_multilevel_args(temperature, peer_weight, cross_weight, peer, cross, cross_pairs)
        check_smoothing(alpha, smoothing)
    except ValueError as e:
        raise ValueError(f"hico: {e}") from None
    if lam < 0:
        raise ValueError(f"hico: lam must be >= 0, got {lam}")
    if heads not in HEAD_KINDS:
        raise ValueError(f"hico: heads must be one of {HEAD_KINDS}, got {heads!r}")
    if medium_level not in (3, 4):
        raise ValueError(f"hico: medium_level must be 3 (released code) or 4 (paper figure), got {medium_level!r}")
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown or len(set(levels)) != len(levels) or "global" not in levels:
        raise ValueError(f"hico: levels must be distinct names among {list(LEVELS)} and include "
                         f"'global', got {list(levels)}")
    if not peer and set(levels) == {"global"}:
        raise ValueError("hico: cross-level terms need local or medium in levels (got only global "
                         "with peer: false); nothing to compute")
    if min(proj_dim, hidden) < 1:
        raise ValueError(f"hico: proj_dim and hidden must be >= 1, got {proj_dim}, {hidden}")
