"""BYOL (Grill et al., NeurIPS 2020, "Bootstrap Your Own Latent"; reference:
google-deepmind/deepmind-research ``byol/``).

Online network = encoder -> projector -> predictor; target network = EMA of encoder ->
projector (no predictor). Loss, symmetrised over the two views (paper Eq. 2, summed):

    L = (2 - 2 cos(q(v1), sg(z'(v2)))) + (2 - 2 cos(q(v2), sg(z'(v1))))

The target follows ``tau = 1 - (1 - tau_base)(cos(pi k/K) + 1)/2`` (``tau_base`` 0.996 -> 1),
driven by the shared loop's ``after_step(progress)``. The projector and predictor need their
BN (without it BYOL collapses); the target runs without gradient on its own batch statistics.
``z_std`` (per-dimension std of the normalised online projections, ~1/sqrt(d) when healthy,
-> 0 on collapse) is logged to catch collapse at batch 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from baselines._momentum import cosine_momentum, momentum_copy, update_momentum
from hico.losses import negative_cosine
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("byol")
class BYOL(PretrainMethod):
    def __init__(self, proj_hidden: int = 4096, proj_dim: int = 256, pred_hidden: int = 4096,
                 base_momentum: float = 0.996, **base):
        super().__init__(**base)
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        d = self.backbone.num_features
        self.base_momentum = float(base_momentum)
        self.momentum = self.base_momentum  # current tau, updated by after_step (for logs/tests)
        self.projector = ProjectionHead(d, proj_hidden, proj_dim, batch_norm=True)
        self.predictor = ProjectionHead(proj_dim, pred_hidden, proj_dim, batch_norm=True)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)

    def training_step(self, batch):
        x1, x2 = batch["views"]  # [B, 3, S, S] each
        z1 = self.projector(self.backbone(x1))  # [B, proj_dim]
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(x1))
            t2 = self.target_projector(self.target_backbone(x2))
        # 2 - 2 cos = 2 + 2 * negative_cosine
        loss = (2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))
        z_std = F.normalize(z1.detach().float(), dim=1).std(dim=0).mean()
        return {"loss": loss, "z_std": z_std}

    def after_step(self, progress: float) -> None:
        self.momentum = cosine_momentum(progress, self.base_momentum)
        update_momentum(self.target_backbone, self.backbone, self.momentum)
        update_momentum(self.target_projector, self.projector, self.momentum)
