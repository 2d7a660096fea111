"""USCL (Chen et al., MICCAI 2021, "USCL: Pretraining Deep Ultrasound Image Diagnosis Model
through Video Contrastive Representation Learning"; reference: 983632847/USCL
``train_USCL/simclr.py``, ``train_USCL/models/resnet_simclr.py``).

Views from the three-frame mixup sampler (f2 shared by both views). With
``z = l2(relu(l1(h)))`` (512 -> 512 -> 256) and a linear classifier ``fc`` on ``z``:

    L = NT-Xent(z_i, z_j; T = 0.5) + lambda [CE(fc(z_i), y) + CE(fc(z_j), y)]

with hard-label CE averaged over the *labelled* videos only (label -1 dropped; the release
marks them 9999); lambda = 0.2. The validation loss is the contrastive term alone on the
un-mixed pair, as ``SimCLR._validate`` (which picks ``best_model.pth``).
Two forward passes per step instead of the release's four (same losses; BN running stats see
each view once instead of twice).
"""

from __future__ import annotations

import torch
from torch import nn

from hico.losses import check_temperature, nt_xent, soft_cross_entropy
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("uscl")
class USCL(PretrainMethod):
    def __init__(self, temperature: float = 0.5, proj_dim: int = 256, ce_weight: float = 0.2, **base):
        super().__init__(**base)
        check_temperature(temperature)
        if ce_weight < 0:
            raise ValueError(f"ce_weight must be >= 0, got {ce_weight}")
        d = self.backbone.num_features
        self.temperature, self.ce_weight = float(temperature), float(ce_weight)
        self.projector = ProjectionHead(d, d, proj_dim)  # l1, l2: 512 -> 512 -> 256
        # fc on the projection output, as released; no classes (no labelled pool) -> no CE term
        self.classifier = nn.Linear(proj_dim, self.num_classes) if self.num_classes > 0 else None

    def _project(self, batch):
        x_i, x_j = batch["views"]  # [B, 3, S, S] each
        return self.projector(self.backbone(x_i)), self.projector(self.backbone(x_j))  # [B, 256]

    def training_step(self, batch):
        z_i, z_j = self._project(batch)
        contrastive = nt_xent(z_i, z_j, self.temperature)
        out = {"contrastive": contrastive}
        loss = contrastive
        if self.classifier is not None and self.ce_weight > 0:
            labels = batch["labels"]
            ce = soft_cross_entropy(self.classifier(z_i), labels, smoothing="hard") + soft_cross_entropy(
                self.classifier(z_j), labels, smoothing="hard"
            )
            loss = loss + self.ce_weight * ce
            out["ce"] = ce
        return {"loss": loss, **out}

    def sees_labels(self) -> bool:
        return self.classifier is not None and self.ce_weight > 0

    @torch.no_grad()
    def validation_step(self, batch):
        z_i, z_j = self._project(batch)
        return {"loss": nt_xent(z_i, z_j, self.temperature)}
