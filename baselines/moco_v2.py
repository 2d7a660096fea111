"""MoCo v2 (Chen, Fan, Girshick, He 2020, "Improved Baselines with Momentum Contrastive
Learning"; He et al., CVPR 2020; reference: facebookresearch/moco ``moco/builder.py``).

Query ``q`` from the online encoder on view 1, key ``k`` from its momentum copy on view 2,
InfoNCE over ``[q.k, q.queue] / T``; this step's keys replace the oldest queue entries
*after* the logits are computed. The queue, its pointer and the video of every queued key are
registered buffers, so ``state_dict()`` (the shared loop's ``last.pt``) resumes exactly.

Differences from ``moco/builder.py``: one GPU has no shuffle-BN (the key encoder's BN uses the
key batch's own statistics, as lightly's single-device example); the queue may be any size
(enqueue wraps around) instead of a multiple of the batch; the queue is ``[K, D]`` row-major.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from baselines._momentum import momentum_copy, update_momentum
from hico.losses import check_temperature, gather_with_grad, infonce_logits_loss
from hico.methods.base import PretrainMethod
from hico.models.heads import ProjectionHead
from hico.registry import register_method


@register_method("moco_v2")
class MoCoV2(PretrainMethod):
    def __init__(self, temperature: float = 0.2, momentum: float = 0.999, queue_size: int = 65536,
                 proj_hidden: int | None = None, proj_dim: int = 128, **base):
        super().__init__(**base)
        check_temperature(temperature)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        d = self.backbone.num_features
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.projector = ProjectionHead(d, proj_hidden or d, proj_dim)  # 512 -> 512 -> 128 for R18
        self.key_backbone = momentum_copy(self.backbone)
        self.key_projector = momentum_copy(self.projector)
        self._make_queue(int(queue_size), proj_dim, device=None)
        self._queue_checked = False

    def _make_queue(self, size: int, dim: int, device) -> None:
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, device=device), dim=1))  # [K, D]
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long, device=device))
        self.register_buffer("queue_video", torch.full((size,), -1, dtype=torch.long, device=device))

    def fit_to_data(self, n_train_videos: int, batch_size: int) -> None:
        """Clamp the queue to the videos one epoch draws (one sample per video per epoch).

        A longer queue holds several keys of the same video, so the anchor's own earlier
        frames act as negatives (research notes §6.2). Call before loading a checkpoint."""
        per_epoch = max(batch_size, n_train_videos // batch_size * batch_size)
        size = self.queue.shape[0]
        if size > per_epoch:
            warnings.warn(
                f"moco_v2: queue_size {size} exceeds the {per_epoch} videos drawn per epoch "
                f"({n_train_videos} training videos, batch {batch_size}); clamped to {per_epoch} "
                "so no video is its own negative. Set params.queue_size <= the number of "
                "training videos (a multiple of batch_size) to silence this.",
                stacklevel=2,
            )
            self._make_queue(per_epoch, self.queue.shape[1], device=self.queue.device)

    def _loss(self, batch, enqueue: bool):
        x_q, x_k = batch["views"]  # [B, 3, S, S] each
        q = F.normalize(self.projector(self.backbone(x_q)), dim=1)  # [B, D]
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone(x_k)), dim=1)  # [B, D]
        # clone: the queue is overwritten below, before backward needs it
        loss = infonce_logits_loss(q, k, self.queue.clone().detach(), self.temperature)
        if enqueue:
            self._enqueue(k, batch["video_idx"])
        return {"loss": loss}

    def training_step(self, batch):
        return self._loss(batch, enqueue=True)

    @torch.no_grad()
    def validation_step(self, batch):
        return self._loss(batch, enqueue=False)  # held-out keys never enter the queue

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, video_idx: torch.Tensor) -> None:
        keys = gather_with_grad(keys.detach())  # every rank's keys, in rank order
        video_idx = gather_with_grad(video_idx.to(self.queue_video.device))
        size = self.queue.shape[0]
        keys, video_idx = keys[-size:], video_idx[-size:]
        was_empty = not self._queue_checked and bool((self.queue_video < 0).any())
        ptr = int(self.queue_ptr)
        slots = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_video[slots] = video_idx
        self.queue_ptr.fill_((ptr + keys.shape[0]) % size)
        if not self._queue_checked and bool((self.queue_video >= 0).all()):
            self._queue_checked = True  # once per process: a resumed full queue is not re-checked
            distinct = int(torch.unique(self.queue_video).numel())
            if was_empty and distinct < size:
                warnings.warn(
                    f"moco_v2: the queue of {size} keys holds only {distinct} distinct videos when "
                    "it first fills: queue_size exceeds the videos drawn per epoch, so keys of the "
                    f"anchor's own video act as negatives. Set params.queue_size <= {distinct} "
                    "(a multiple of batch_size); see baselines/moco_v2.yaml.",
                    stacklevel=2,
                )

    def after_step(self, progress: float) -> None:
        update_momentum(self.key_backbone, self.backbone, self.momentum)
        update_momentum(self.key_projector, self.projector, self.momentum)
