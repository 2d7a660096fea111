"""SimSiam (Chen & He, CVPR 2021, "Exploring Simple Siamese Representation Learning";
reference: facebookresearch/simsiam ``simsiam/builder.py``, ``main_simsiam.py``).

    L = -1/2 [cos(p1, sg(z2)) + cos(p2, sg(z1))]

with a 3-layer BN projector (last BN without affine, fc biases off) and a 2048 -> 512 -> 2048
bottleneck predictor. The stop-gradient is the method; ``z_std`` (per-dimension std of the
normalised projections, -> 0 on collapse) is logged. ``fix_pred_lr``: the predictor's group
carries ``fix_lr: True`` as in ``main_simsiam.py`` (``--fix-pred-lr``) for a loop that honours it.
"""

from __future__ import annotations

import torch.nn.functional as F

from hico.losses import negative_cosine
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("simsiam")
class SimSiam(PretrainMethod):
    def __init__(self, proj_dim: int = 2048, pred_hidden: int = 512, fix_pred_lr: bool = True, **base):
        super().__init__(**base)
        d = self.backbone.num_features
        self.fix_pred_lr = bool(fix_pred_lr)
        self.projector = ProjectionHead(
            d, proj_dim, proj_dim, n_layers=3, batch_norm=True, hidden_bias=False,
            last_bias=False, last_batch_norm=True, last_bn_affine=False,
        )
        self.predictor = ProjectionHead(proj_dim, pred_hidden, proj_dim, batch_norm=True, hidden_bias=False)

    def training_step(self, batch):
        x1, x2 = batch["views"]  # [B, 3, S, S] each
        z1 = self.projector(self.backbone(x1))  # [B, proj_dim]
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = 0.5 * (negative_cosine(p1, z2.detach()) + negative_cosine(p2, z1.detach()))
        z_std = F.normalize(z1.detach().float(), dim=1).std(dim=0).mean()
        return {"loss": loss, "z_std": z_std}

    def param_groups(self):
        encoder = [p for m in (self.backbone, self.projector) for p in m.parameters() if p.requires_grad]
        predictor = [p for p in self.predictor.parameters() if p.requires_grad]
        return [{"params": encoder, "fix_lr": False}, {"params": predictor, "fix_lr": self.fix_pred_lr}]
