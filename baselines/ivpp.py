"""IVPP: intra-video positive pairs (VanBerlo et al. 2024, "Intra-video positive pairs in
self-supervised learning for ultrasound", arXiv 2403.07715; reference: bvanberl/IVPP, its
SimCLR variant ``ncus_simclr``).

Two frames at most ``delta`` frames apart (``near_frames`` sampler, may coincide), each
augmented once, with pair weight ``w = (delta - |i2 - i1| + 1) / (delta + 1)``; SimCLR's
NT-Xent with every anchor's cross entropy scaled by its pair's ``w`` (``batch["weights"]``).
IVPP's projector: Linear -> 768, BN, ReLU, Linear 768 -> 768 without bias.
"""

from __future__ import annotations

from hico.losses import check_temperature, nt_xent
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("ivpp")
class IVPP(PretrainMethod):
    def __init__(self, temperature: float = 0.1, proj_hidden: int = 768, proj_dim: int = 768, **base):
        super().__init__(**base)
        check_temperature(temperature)
        d = self.backbone.num_features
        self.temperature = float(temperature)
        self.projector = ProjectionHead(d, proj_hidden, proj_dim, batch_norm=True, last_bias=False)

    def training_step(self, batch):
        x1, x2 = batch["views"]  # [B, 3, S, S] each: frames i1 and i2
        z1 = self.projector(self.backbone(x1))  # [B, proj_dim]
        z2 = self.projector(self.backbone(x2))
        # IVPP sums its two directions (twice this value); nt_xent averages the 2B anchors
        loss = nt_xent(z1, z2, self.temperature, weights=batch["weights"])
        return {"loss": loss, "mean_weight": batch["weights"].detach().float().mean()}
