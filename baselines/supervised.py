"""Supervised pretraining on the pretraining pool's own labels: the upper reference.

USCL/HiCo's comparison tables include "US-4 supervised" pretraining (research notes §7);
here: one augmented frame per video, a linear classifier on the pooled c5 features, cross
entropy over the labelled videos (``label_rate: 1.0``; label -1 dropped). It trains, so it is a
registered method with ``requires_pretraining: true`` even though it is a control.
"""

from __future__ import annotations

from torch import nn

from hico.losses import soft_cross_entropy
from hico.methods.base import PretrainMethod
from hico.registry import register_method


@register_method("supervised")
class Supervised(PretrainMethod):
    def __init__(self, label_smoothing: float = 0.0, **base):
        super().__init__(**base)
        if self.num_classes < 1:
            raise ValueError(
                "supervised: the pretraining pool has no classes (num_classes = 0); it needs "
                "labelled videos (a manifest label column and label_rate > 0)"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.classifier = nn.Linear(self.backbone.num_features, self.num_classes)

    def sees_labels(self) -> bool:
        return True

    def training_step(self, batch):
        x = batch["views"][0]  # [B, 3, S, S]; one view per video
        logits = self.classifier(self.backbone(x))  # [B, C]
        labels = batch["labels"]
        smoothing = "standard" if self.label_smoothing > 0 else "hard"
        loss = soft_cross_entropy(logits, labels, alpha=self.label_smoothing, smoothing=smoothing)
        labelled = labels >= 0
        correct = ((logits.detach().argmax(1) == labels) & labelled).sum()
        accuracy = correct / labelled.sum().clamp(min=1)  # 0 on a batch without labels
        return {"loss": loss, "accuracy": accuracy}
