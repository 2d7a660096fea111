"""SimCLR (Chen et al., ICML 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"; reference: google-research/simclr, and the PyTorch port USCL/HiCo build on).

Two augmentations of one random frame per video (USCL's ``USDataset_image`` baseline), a
2-layer MLP projector on the pooled c5 features, NT-Xent over the 2N views.
"""

from __future__ import annotations

from hico.losses import check_temperature, nt_xent
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("simclr")
class SimCLR(PretrainMethod):
    def __init__(self, temperature: float = 0.5, proj_hidden: int | None = None, proj_dim: int = 256, **base):
        super().__init__(**base)
        check_temperature(temperature)
        d = self.backbone.num_features
        self.temperature = temperature
        self.projector = ProjectionHead(d, proj_hidden or d, proj_dim)  # 512 -> 512 -> 256 for R18

    def training_step(self, batch):
        x_i, x_j = batch["views"]  # [B, 3, S, S] each
        z_i = self.projector(self.backbone(x_i))  # [B, proj_dim]
        z_j = self.projector(self.backbone(x_j))
        loss = nt_xent(z_i, z_j, self.temperature)
        return {"loss": loss}
